"""Whether this host's KVM can run a guest: /dev/kvm existing is not enough. Some hosts (a
nested KVM) create VMs but offer a CPU lacking features the host's own CPU has (SSE3 and on),
and qemu then hangs booting Linux; others never run a vCPU at all. Two probes, well under a
second together: KVM's supported CPUID must have the host's basic SSE features, and a
one-instruction guest (`hlt`), run in a child process, must halt within PROBE_TIMEOUT (a child
that does not is killed). When either fails, VMs run under TCG.

Run as ``python -m homecloud.instances.drivers.kvm``: exit 0 when a vCPU ran, 1 otherwise,
with the reason on stderr.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
import subprocess
import sys
from dataclasses import dataclass

KVM_DEVICE = "/dev/kvm"
PROBE_TIMEOUT = 0.5  # seconds: a working KVM halts the probe guest in a few milliseconds

_KVMIO = 0xAE
_REGS_SIZE = 18 * 8  # struct kvm_regs
_SREGS_SIZE = 312  # struct kvm_sregs
_MEMORY_REGION = struct.Struct("=IIQQQ")  # struct kvm_userspace_memory_region
_EXIT_HLT = 5
_CPUID_ENTRY = struct.Struct("=7I12x")  # struct kvm_cpuid_entry2
_CPUID_ENTRIES = 128
# CPUID leaf 1 ECX bits a guest kernel expects when the host CPU has them (/proc/cpuinfo name).
LEAF1_ECX_FEATURES = {"pni": 0, "ssse3": 9, "sse4_1": 19, "sse4_2": 20, "popcnt": 23}


def _io(nr: int) -> int:
    return (_KVMIO << 8) | nr


def _iow(nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (_KVMIO << 8) | nr


def _ior(nr: int, size: int) -> int:
    return (2 << 30) | (size << 16) | (_KVMIO << 8) | nr


KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_GET_SUPPORTED_CPUID = (3 << 30) | (8 << 16) | (_KVMIO << 8) | 0x05
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, _MEMORY_REGION.size)
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, _REGS_SIZE)
KVM_SET_REGS = _iow(0x82, _REGS_SIZE)
KVM_GET_SREGS = _ior(0x83, _SREGS_SIZE)
KVM_SET_SREGS = _iow(0x84, _SREGS_SIZE)


@dataclass(frozen=True)
class KvmState:
    usable: bool
    reason: str  # why not, or what was checked


def missing_features(host_flags: set[str], kvm_leaf1_ecx: int) -> list[str]:
    """The host CPU's basic features KVM does not offer its guests (pure)."""
    return [name for name, bit in LEAF1_ECX_FEATURES.items()
            if name in host_flags and not kvm_leaf1_ecx >> bit & 1]


def host_cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def kvm_leaf1_ecx() -> int:
    """ECX of CPUID leaf 1 as KVM offers it to guests."""
    kvm = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        buffer = bytearray(struct.pack("=II", _CPUID_ENTRIES, 0)
                           + bytes(_CPUID_ENTRY.size * _CPUID_ENTRIES))
        fcntl.ioctl(kvm, KVM_GET_SUPPORTED_CPUID, buffer)
    finally:
        os.close(kvm)
    count = struct.unpack_from("=I", buffer, 0)[0]
    for i in range(count):
        function, index, _flags, _eax, _ebx, ecx, _edx = _CPUID_ENTRY.unpack_from(
            buffer, 8 + i * _CPUID_ENTRY.size)
        if function == 1 and index == 0:
            return int(ecx)
    return 0


def run_probe_guest() -> None:
    """Run a guest of one `hlt` instruction at address 0 in real mode; return when it halts.
    Raises OSError when KVM refuses a step; never returns when the vCPU never runs."""
    kvm = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
    memory = mmap.mmap(-1, 0x1000)
    memory[0] = 0xF4  # hlt
    address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, _MEMORY_REGION.pack(0, 0, 0, 0x1000, address))
    vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
    run_size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)
    run = mmap.mmap(vcpu, run_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    sregs = bytearray(fcntl.ioctl(vcpu, KVM_GET_SREGS, bytes(_SREGS_SIZE)))
    struct.pack_into("=Q", sregs, 0, 0)  # cs.base
    struct.pack_into("=H", sregs, 12, 0)  # cs.selector
    fcntl.ioctl(vcpu, KVM_SET_SREGS, bytes(sregs))
    regs = bytearray(_REGS_SIZE)
    struct.pack_into("=QQ", regs, 16 * 8, 0, 0x2)  # rip 0, rflags with its fixed bit
    fcntl.ioctl(vcpu, KVM_SET_REGS, bytes(regs))
    fcntl.ioctl(vcpu, KVM_RUN, 0)
    exit_reason = struct.unpack_from("=I", run, 8)[0]
    if exit_reason != _EXIT_HLT:
        raise OSError(f"the probe guest exited with reason {exit_reason}, not hlt")


def probe_kvm(timeout: float = PROBE_TIMEOUT) -> KvmState:
    """Whether a vCPU runs here, in well under a second either way."""
    if not os.path.exists(KVM_DEVICE):
        return KvmState(False, f"{KVM_DEVICE} does not exist")
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return KvmState(False, f"{KVM_DEVICE} is not readable and writable here")
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            missing = missing_features(host_cpu_flags(cpuinfo.read()), kvm_leaf1_ecx())
    except OSError as exc:
        return KvmState(False, f"{KVM_DEVICE}: cannot read its CPUID: {exc.strerror or exc}")
    if missing:
        return KvmState(False, f"{KVM_DEVICE} offers guests a CPU without {', '.join(missing)}, "
                               "which this host's CPU has")
    try:
        probe = subprocess.run([sys.executable, "-I", "-m", __name__], capture_output=True,
                               text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return KvmState(False, f"{KVM_DEVICE} creates VMs but a vCPU never runs "
                               f"(no halt within {timeout:g}s)")
    if probe.returncode != 0:
        why = (probe.stderr.strip().splitlines() or ["the probe failed"])[-1]
        return KvmState(False, f"{KVM_DEVICE}: {why}")
    return KvmState(True, f"{KVM_DEVICE} runs a vCPU")


def main() -> int:
    try:
        run_probe_guest()
    except OSError as exc:
        print(exc.strerror or exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
