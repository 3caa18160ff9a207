"""Network boot of bare-metal machines: homecloud's provisioning HTTP server and what its
DHCP/TFTP server (dnsmasq) is configured with."""
