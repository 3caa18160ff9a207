# The machine's own identity in its root: hostname, machine-id, SSH keys, network, resolver.
. /lib/hc/lib.sh
mount_target || exit 1
hostname=$(machine hostname); fqdn=$(machine fqdn); domain=$(machine domain)
echo "$hostname" > "$TARGET/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 %s %s\n' "${fqdn:-$hostname}" "$hostname" > "$TARGET/etc/hosts"
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TARGET/etc/machine-id"
echo >> "$TARGET/etc/machine-id"
mkdir -p "$TARGET/root/.ssh"
chmod 700 "$TARGET/root/.ssh"
jq -r '.machine.ssh_keys // [] | .[]' "$WORKFLOW" > "$TARGET/root/.ssh/authorized_keys"
chmod 600 "$TARGET/root/.ssh/authorized_keys"
mkdir -p "$TARGET/etc/systemd/network"
network=$TARGET/etc/systemd/network/10-homecloud.network
printf '[Match]\nName=en* eth*\n\n[Network]\n' > "$network"
address=$(machine address4)
if [ -n "$address" ]; then
    echo "Address=$address/$(machine prefix4)" >> "$network"
    gateway=$(machine gateway4)
    [ -n "$gateway" ] && echo "Gateway=$gateway" >> "$network"
    how="static $address/$(machine prefix4)"
else
    echo "DHCP=ipv4" >> "$network"
    how="DHCP"
fi
rm -f "$TARGET/etc/resolv.conf"
: > "$TARGET/etc/resolv.conf"
[ -n "$domain" ] && echo "search $domain" >> "$TARGET/etc/resolv.conf"
for server in $(jq -r '.machine.dns // [] | .[]' "$WORKFLOW"); do
    echo "DNS=$server" >> "$network"
    echo "nameserver $server" >> "$TARGET/etc/resolv.conf"
done
[ -n "$domain" ] && echo "Domains=$domain" >> "$network"
echo "identity: $hostname, network $how, $(grep -c . "$TARGET/root/.ssh/authorized_keys") SSH key(s)"
