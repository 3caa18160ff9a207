# The image's btrfs send stream (zstd on a LAN, a length and CRC-32C trailer as
# homecloud.snapshots.framing writes it; receive-image.sh checks both) received into
# images/NAME/ (a received snapshot cannot move: it stays where it lands), then a writable
# snapshot of it becomes the root.
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
encoding=$(jq -r '.image.encoding // "zstd"' "$WORKFLOW")
started=$(date +%s)
wget -q -O - --header "Authorization: Bearer $HC_TOKEN" "$HC_URL/m/$HC_MACHINE/image" \
    | sh /lib/hc/receive-image.sh "$encoding" "$incoming"
status=$?
if [ "$status" -ne 0 ]; then
    remove_incoming
    echo "the image stream was cut or damaged (status $status): nothing kept"
    exit 1
fi
received=$(ls "$incoming")
[ "$(echo "$received" | wc -l)" -eq 1 ] && [ -n "$received" ] \
    || { remove_incoming; echo "the stream held no single subvolume"; exit 1; }
btrfs subvolume snapshot "$incoming/$received" "$DISK_TOP/root" > /dev/null
took=$(( $(date +%s) - started ))
echo "received image $name ($(du -sm "$incoming/$received" | cut -f1) MiB) in ${took}s; root is a writable snapshot of it"
