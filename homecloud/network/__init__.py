"""Instance networking: addresses, link names, links (netlink), ports and the nftables ruleset."""
