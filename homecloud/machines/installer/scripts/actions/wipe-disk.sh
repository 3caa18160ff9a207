# Remove every file system and partition table signature from the machine's disk.
. /lib/hc/lib.sh
disk=$(target_disk) || { echo "this machine has no disk"; exit 1; }
[ -b "$disk" ] || { echo "no disk $disk on this machine (it has: $(ls /sys/block | grep -v -e loop -e ram | tr '\n' ' '))"; exit 1; }
unmount_all
wipefs -a "$disk"
# GPT keeps a copy at the end of the disk: clear both ends.
sectors=$(cat "/sys/block/${disk##*/}/size")
dd if=/dev/zero of="$disk" bs=512 count=2048 conv=fsync 2>/dev/null
dd if=/dev/zero of="$disk" bs=512 seek=$((sectors - 2048)) count=2048 conv=fsync 2>/dev/null
echo "wiped $disk ($((sectors / 2048)) MiB)"
