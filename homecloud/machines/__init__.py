"""Bare-metal machines: their records, install workflows, network boot configuration."""

from homecloud.ownunits import DHCP_UNIT, PROVISION_UNIT

# Installed with homecloud; `hc provision enable` starts them, `disable` stops them.
UNITS = (PROVISION_UNIT, DHCP_UNIT)
