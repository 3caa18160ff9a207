# Shared by /init and the actions: logging, HTTP to the provisioning server, the target disk.
set -o pipefail
HC_RUN=/run/hc
WORKFLOW=$HC_RUN/workflow.json
TARGET=/target      # the installed (or in-RAM) root, as the machine will boot it
DISK_TOP=/mnt/disk  # the btrfs file system's top level: images/ and root
ESP_MOUNT=/mnt/esp
HTTP_TRIES=${HTTP_TRIES:-60}  # with back-off up to 10 s: rides out a restart of the server
STEP_TRIES=3
mkdir -p "$HC_RUN"

say() { echo "hc-installer: $*" > /dev/console; echo "$*" >> "$HC_RUN/step.log"; }

stop_machine() {
    say "stopping: 'hc machine ls' on the host shows why; 'hc machine reinstall' starts again"
    sync
    sleep 5
    poweroff -f
}

# http PATH OUT [POSTFILE]: one authorised request, retried with back-off while the server is
# unreachable or failing; a refusal (401/403/404) is final.
http() {
    tries=0 pause=1
    while :; do
        if [ -n "$3" ]; then
            wget -q -O "$2" --header "Authorization: Bearer $HC_TOKEN" \
                --header "Content-Type: application/json" --post-file "$3" \
                "$HC_URL$1" 2> "$HC_RUN/http.err" && return 0
        else
            wget -q -O "$2" --header "Authorization: Bearer $HC_TOKEN" \
                "$HC_URL$1" 2> "$HC_RUN/http.err" && return 0
        fi
        if grep -qE 'HTTP/1\.[01] (401|403|404)' "$HC_RUN/http.err"; then
            echo "hc-installer: $1: $(cat "$HC_RUN/http.err")" > /dev/console
            return 2
        fi
        tries=$((tries + 1))
        [ "$tries" -ge "$HTTP_TRIES" ] && return 1
        sleep "$pause"
        [ "$pause" -lt 10 ] && pause=$((pause * 2))
    done
}

# event STEP STATUS MESSAGE [LOGFILE]: report a step to the server.
event() {
    if [ -n "$4" ] && [ -s "$4" ]; then
        tail -n 200 "$4" > "$HC_RUN/event.log"
    else
        : > "$HC_RUN/event.log"
    fi
    jq -R -s --arg step "$1" --arg status "$2" --arg message "$3" \
        '{step: $step, status: $status, message: $message,
          log: (split("\n") | map(select(length > 0)))}' \
        < "$HC_RUN/event.log" > "$HC_RUN/event.json"
    http "/m/$HC_MACHINE/events" "$HC_RUN/event.reply" "$HC_RUN/event.json"
}

machine() { jq -r ".machine.$1 // empty" "$WORKFLOW"; }

network_up() {
    for attempt in 1 2 3 4 5; do
        for path in /sys/class/net/*; do
            nic=${path##*/}
            [ "$nic" = lo ] && continue
            ip link set "$nic" up
            udhcpc -i "$nic" -n -q -t 4 -T 2 -s /lib/hc/dhcp.sh > /dev/null 2>&1
            address=$(ip -4 addr show dev "$nic" | awk '/inet / {print $2; exit}')
            if [ -n "$address" ]; then
                say "network: $nic $address"
                return 0
            fi
        done
        sleep 2
    done
    return 1
}

# The disk the workflow names, or the first one the machine has.
target_disk() {
    disk=$(machine disk)
    if [ -z "$disk" ]; then
        for path in /sys/block/vd* /sys/block/sd* /sys/block/nvme*n* /sys/block/xvd*; do
            [ -e "$path" ] && { echo "/dev/${path##*/}"; return 0; }
        done
        return 1
    fi
    echo "$disk"
}

is_mounted() { grep -q " $1 " /proc/mounts; }

with_param() { jq -r ".$1 // empty" "$HC_RUN/with.json"; }

partition_device() {
    blkid -o device -t "PARTLABEL=$1" 2>/dev/null | head -n 1
}

mount_disk_top() {
    is_mounted "$DISK_TOP" && return 0
    mkdir -p "$DISK_TOP"
    root=$(partition_device hc-root)
    [ -n "$root" ] || { echo "no partition labelled hc-root: run the partition action first"; return 1; }
    mount -t btrfs -o subvolid=5 "$root" "$DISK_TOP"
}

mount_target() {
    is_mounted "$TARGET" && return 0
    mount_disk_top || return 1
    [ -d "$DISK_TOP/root" ] || { echo "no root subvolume: run the stream-image action first"; return 1; }
    mkdir -p "$TARGET"
    mount -t btrfs -o subvol=root "$(partition_device hc-root)" "$TARGET"
}

mount_esp() {
    is_mounted "$ESP_MOUNT" && return 0
    mkdir -p "$ESP_MOUNT"
    esp=$(partition_device hc-esp)
    [ -n "$esp" ] || { echo "no partition labelled hc-esp: run the partition action first"; return 1; }
    mount -t vfat "$esp" "$ESP_MOUNT"
}

unmount_all() {
    for point in "$TARGET/proc" "$TARGET/sys" "$TARGET/dev" "$TARGET" "$ESP_MOUNT" "$DISK_TOP"; do
        is_mounted "$point" && umount "$point"
    done
    return 0
}

# run_step INDEX: run one action with its timeout, retried; 0 when it ended ok.
run_step() {
    id=$(jq -r ".actions[$1].id" "$WORKFLOW")
    action=$(jq -r ".actions[$1].action" "$WORKFLOW")
    limit=$(jq -r ".actions[$1].timeout // 600" "$WORKFLOW")
    jq ".actions[$1].with // {}" "$WORKFLOW" > "$HC_RUN/with.json"
    script=/lib/hc/actions/$action.sh
    try=1
    while [ "$try" -le "$STEP_TRIES" ]; do
        : > "$HC_RUN/step.log"
        event "$id" started "$action (try $try of $STEP_TRIES)" || return 1
        started=$(date +%s)
        if [ ! -f "$script" ]; then
            echo "this installer has no action $action" >> "$HC_RUN/step.log"
            status=127
        else
            # In a session of its own: past its timeout, what the action started (a sleeping
            # command, a receive still writing) ends with it, before a retry starts over.
            rm -f "$HC_RUN/step.pgid"
            timeout "$limit" setsid sh -c 'echo $$ > "$0"; exec sh "$1"' \
                "$HC_RUN/step.pgid" "$script" >> "$HC_RUN/step.log" 2>&1
            status=$?
            case "$status" in
                143|137) [ -s "$HC_RUN/step.pgid" ] && kill -KILL -"$(cat "$HC_RUN/step.pgid")" 2>/dev/null ;;
            esac
        fi
        took=$(( $(date +%s) - started ))
        sed "s/^/  $id: /" "$HC_RUN/step.log" > /dev/console
        if [ "$status" -eq 0 ]; then
            event "$id" ok "$action done in ${took}s" "$HC_RUN/step.log" || return 1
            return 0
        fi
        if [ "$status" -eq 143 ] || [ "$status" -eq 137 ]; then
            message="$action timed out after ${limit}s"
        else
            message="$action failed: $(grep -v '^ *$' "$HC_RUN/step.log" | tail -n 1)"
        fi
        event "$id" failed "$message" "$HC_RUN/step.log" || return 1
        [ "$status" -eq 127 ] && return 1
        try=$((try + 1))
    done
    return 1
}

run_workflow() {
    http "/m/$HC_MACHINE/workflow" "$WORKFLOW" || { say "could not fetch the workflow"; stop_machine; }
    count=$(jq '.actions | length' "$WORKFLOW")
    resume=$(jq -r '.resume_from // empty' "$WORKFLOW")
    index=0
    if [ -n "$resume" ]; then
        index=$(jq --arg id "$resume" '[.actions[].id] | index($id) // 0' "$WORKFLOW")
        say "resuming at step $resume"
    fi
    while [ "$index" -lt "$count" ]; do
        run_step "$index" || { unmount_all; say "the workflow stopped at step $index"; stop_machine; }
        index=$((index + 1))
    done
    if [ "$(machine diskless)" = true ]; then
        finish_diskless
    fi
    unmount_all
    sync
    # Only now, every step ok and the disk written out, may the machine be called installed.
    http "/m/$HC_MACHINE/done" "$HC_RUN/done.reply" "$WORKFLOW" || { say "could not report done"; stop_machine; }
    say "installed: rebooting into the disk"
    reboot -f
}

finish_diskless() {
    http "/m/$HC_MACHINE/done" "$HC_RUN/done.reply" "$WORKFLOW" || { say "could not report done"; stop_machine; }
    say "running from RAM"
    for point in /proc /sys /dev /run; do umount -l "$point"; done
    exec switch_root "$TARGET" /sbin/init
}
