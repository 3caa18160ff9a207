"""KVM detection: the CPUID comparison (pure) and the probe's answer on this host."""

from __future__ import annotations

import time

from homecloud.instances.drivers.kvm import (
    LEAF1_ECX_FEATURES,
    host_cpu_flags,
    missing_features,
    probe_kvm,
)

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme pni ssse3 sse4_1 sse4_2 popcnt hypervisor
"""


def test_host_flags_are_read_from_cpuinfo() -> None:
    assert {"pni", "sse4_2", "hypervisor"} <= host_cpu_flags(CPUINFO)
    assert host_cpu_flags("processor: 0\n") == set()


def test_features_the_host_has_and_kvm_lacks_are_named() -> None:
    flags = host_cpu_flags(CPUINFO)
    everything = sum(1 << bit for bit in LEAF1_ECX_FEATURES.values())
    assert missing_features(flags, everything) == []
    # What a broken nested KVM was measured to offer: none of them.
    assert missing_features(flags, 0x81202000) == ["pni", "ssse3", "sse4_1", "sse4_2",
                                                   "popcnt"]
    # A feature the host lacks is not asked of KVM either.
    assert missing_features({"pni"}, 0) == ["pni"]


def test_probe_answers_within_a_second() -> None:
    started = time.monotonic()
    state = probe_kvm()
    assert time.monotonic() - started < 1.0
    assert state.reason
    if not state.usable:
        assert "/dev/kvm" in state.reason
