# One ESP that boots both ways: systemd-boot for UEFI, extlinux (with GPT's MBR code) for BIOS;
# each boots the image's own kernel and initrd with the root subvolume of the btrfs partition.
. /lib/hc/lib.sh
mount_target || exit 1
mount_esp || exit 1
disk=$(target_disk) || exit 1
root_dev=$(partition_device hc-root)
uuid=$(blkid -s UUID -o value "$root_dev")
boot_file() {  # the file the target's /vmlinuz or /initrd.img link names, or the newest one
    link=$(readlink "$TARGET/$1")
    if [ -n "$link" ] && [ -f "$TARGET/${link#/}" ]; then echo "$TARGET/${link#/}"; return; fi
    ls "$TARGET"/boot/"$1"-* 2>/dev/null | tail -n 1
}
kernel=$(boot_file vmlinuz); initrd=$(boot_file initrd.img)
[ -n "$kernel" ] && [ -n "$initrd" ] || { echo "the image has no kernel or initrd in /boot"; exit 1; }
cmdline="root=UUID=$uuid rootflags=subvol=root rw console=tty0 console=ttyS0"
cp "$kernel" "$ESP_MOUNT/vmlinuz"
cp "$initrd" "$ESP_MOUNT/initrd.img"
printf 'UUID=%s / btrfs rw,subvol=root 0 0\n' "$uuid" > "$TARGET/etc/fstab"

efi=$TARGET/usr/lib/systemd/boot/efi/systemd-bootx64.efi
if [ -f "$efi" ]; then
    mkdir -p "$ESP_MOUNT/EFI/BOOT" "$ESP_MOUNT/loader/entries"
    cp "$efi" "$ESP_MOUNT/EFI/BOOT/BOOTX64.EFI"
    printf 'default homecloud.conf\ntimeout 0\n' > "$ESP_MOUNT/loader/loader.conf"
    printf 'title homecloud\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n' "$cmdline" \
        > "$ESP_MOUNT/loader/entries/homecloud.conf"
    echo "UEFI: systemd-boot on the ESP"
else
    echo "UEFI: the image has no systemd-boot (systemd-boot-efi): BIOS boot only"
fi

mkdir -p "$ESP_MOUNT/extlinux"
printf 'DEFAULT homecloud\nTIMEOUT 1\nLABEL homecloud\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' \
    "$cmdline" > "$ESP_MOUNT/extlinux/extlinux.conf"
extlinux --install "$ESP_MOUNT/extlinux" 2>&1 | grep -v '^$'
dd if=/usr/lib/EXTLINUX/gptmbr.bin of="$disk" bs=440 count=1 conv=notrunc 2>/dev/null
sync
echo "BIOS: extlinux on the ESP; root=UUID=$uuid subvol=root"
