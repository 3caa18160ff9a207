#!/bin/sh
# udhcpc's hook: configure the lease on the interface (the installer needs no resolver: the
# provisioning server is named by address).
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        for gateway in $router; do ip route add default via "$gateway" dev "$interface"; break; done
        ;;
    deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
esac
exit 0
