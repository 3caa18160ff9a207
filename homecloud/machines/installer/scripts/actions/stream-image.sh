# The image's btrfs send stream (zstd on the wire, SHA-256 trailer as homecloud.snapshots.framing
# writes it) received into images/NAME/ (a received snapshot cannot move: it stays where it
# lands), then a writable snapshot of it becomes the root.
. /lib/hc/lib.sh
mount_disk_top || exit 1
name=$(jq -r '.image.name' "$WORKFLOW")
incoming=$DISK_TOP/images/$name
remove_incoming() {
    for subvolume in "$incoming"/*; do
        [ -e "$subvolume" ] && btrfs subvolume delete "$subvolume" > /dev/null
    done
}
mkdir -p "$incoming"
remove_incoming  # an earlier install, or a cut stream of an earlier try
[ -e "$DISK_TOP/root" ] && btrfs subvolume delete "$DISK_TOP/root" > /dev/null
rm -f "$HC_RUN/trailer.fifo" "$HC_RUN/body.fifo"
mkfifo "$HC_RUN/trailer.fifo" "$HC_RUN/body.fifo"
# coreutils' own (see build.py): every byte of the image passes through them.
TEE=/usr/bin/tee HEAD=/usr/bin/head TAIL=/usr/bin/tail SHA256SUM=/usr/bin/sha256sum
$TAIL -c 32 < "$HC_RUN/trailer.fifo" | od -An -tx1 | tr -d ' \n' > "$HC_RUN/trailer" &
$SHA256SUM < "$HC_RUN/body.fifo" | cut -d' ' -f1 > "$HC_RUN/digest" &
started=$(date +%s)
# The body without its 32-byte digest goes to btrfs receive; both ends are checked after.
wget -q -O - --header "Authorization: Bearer $HC_TOKEN" "$HC_URL/m/$HC_MACHINE/image" \
    | zstd -dc | $TEE "$HC_RUN/trailer.fifo" | $HEAD -c -32 | $TEE "$HC_RUN/body.fifo" \
    | btrfs receive -q "$incoming"
status=$?
wait
if [ "$status" -ne 0 ] || [ "$(cat "$HC_RUN/trailer")" != "$(cat "$HC_RUN/digest")" ] \
        || [ ! -s "$HC_RUN/digest" ]; then
    remove_incoming
    echo "the image stream was cut or damaged (receive status $status): nothing kept"
    exit 1
fi
received=$(ls "$incoming")
[ "$(echo "$received" | wc -l)" -eq 1 ] && [ -n "$received" ] \
    || { remove_incoming; echo "the stream held no single subvolume"; exit 1; }
btrfs subvolume snapshot "$incoming/$received" "$DISK_TOP/root" > /dev/null
took=$(( $(date +%s) - started ))
echo "received image $name ($(du -sm "$incoming/$received" | cut -f1) MiB) in ${took}s; root is a writable snapshot of it"
