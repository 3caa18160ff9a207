# GPT: an EFI system partition (FAT32, also what BIOS boots through extlinux) and btrfs for the rest.
. /lib/hc/lib.sh
disk=$(target_disk) || { echo "this machine has no disk"; exit 1; }
[ -b "$disk" ] || { echo "no disk $disk on this machine (it has: $(ls /sys/block | grep -v -e loop -e ram | tr '\n' ' '))"; exit 1; }
esp=$(with_param esp); esp=${esp:-256M}
esp_mib=$(echo "$esp" | awk '/[Gg]$/ {print int($0) * 1024; next} /[Mm]$/ {print int($0); next} {print int($0 / 1048576)}')
image_mib=$(( ($(jq -r '.image.size // 0' "$WORKFLOW") + 1048575) / 1048576 ))
# Room for the received image, its writable snapshot growing, and btrfs's own metadata.
need_mib=$((esp_mib + image_mib * 2 + 512))
disk_mib=$(( $(cat "/sys/block/${disk##*/}/size") / 2048 ))
if [ "$disk_mib" -lt "$need_mib" ]; then
    echo "disk $disk is too small: ${disk_mib} MiB, the image needs at least ${need_mib} MiB"
    exit 1
fi
unmount_all
sfdisk --quiet --wipe always "$disk" <<TABLE
label: gpt
size=${esp_mib}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="hc-esp", attrs="LegacyBIOSBootable"
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="hc-root"
TABLE
partprobe "$disk" 2>/dev/null
sleep 1
esp_dev=$(partition_device hc-esp); root_dev=$(partition_device hc-root)
[ -n "$esp_dev" ] && [ -n "$root_dev" ] || { echo "the new partitions did not appear"; exit 1; }
# Their chatter (code page warnings, changed defaults) only matters when they fail.
mkfs.vfat -F 32 -n HC-ESP "$esp_dev" > "$HC_RUN/mkfs.out" 2>&1 \
    || { tail -n 3 "$HC_RUN/mkfs.out"; echo "mkfs.vfat $esp_dev failed"; exit 1; }
mkfs.btrfs -q -f -L hc-root "$root_dev" > "$HC_RUN/mkfs.out" 2>&1 \
    || { tail -n 3 "$HC_RUN/mkfs.out"; echo "mkfs.btrfs $root_dev failed"; exit 1; }
echo "$disk: $esp_dev ESP ${esp_mib} MiB, $root_dev btrfs $((disk_mib - esp_mib)) MiB"
