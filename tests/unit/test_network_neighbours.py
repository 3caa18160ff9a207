"""The announcements a re-plumbed instance sends: byte layout of the gratuitous ARP and of the
unsolicited neighbour advertisement."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from homecloud.network.neighbours import gratuitous_arp, unsolicited_advert

MAC = bytes.fromhex("02aabbccddee")


def test_gratuitous_arp_asks_for_its_own_address() -> None:
    packet = gratuitous_arp(MAC, IPv4Address("10.42.0.7"))
    assert packet.hex() == ("0001" "0800" "06" "04" "0001" "02aabbccddee" "0a2a0007"
                            "000000000000" "0a2a0007")


def test_unsolicited_advert_overrides_and_carries_the_mac() -> None:
    address = IPv6Address("fd00::7")
    packet = unsolicited_advert(MAC, address)
    assert packet[:4] == bytes([136, 0, 0, 0])  # the kernel fills in the checksum
    assert packet[4:8] == bytes([0x20, 0, 0, 0])  # override, neither router nor solicited
    assert packet[8:24] == address.packed
    assert packet[24:] == bytes([2, 1]) + MAC  # target link-layer address option
