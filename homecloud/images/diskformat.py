"""What a VM disk file is, from its first bytes (pure logic: no tools, no I/O).

- qcow2: the header says whether the image reads another file (a backing file, or an
  external data file); either would let a crafted image read files of this host, so an
  import refuses both before any tool opens the image.
- raw: a whole disk starts with a partition table (an MBR, or GPT's protective MBR), which
  tells a disk from any other file. Its EFI system partition says it boots with UEFI.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

SECTOR = 512
QCOW2_MAGIC = b"QFI\xfb"
QCOW2_HEADER = 104  # bytes of a version 3 header; version 2 has the first 72
_INCOMPAT_DATA_FILE = 1 << 2  # QCOW2_INCOMPAT_DATA_FILE
MBR_SIGNATURE = b"\x55\xaa"
MBR_GPT_PROTECTIVE = 0xEE
MBR_EFI_SYSTEM = 0xEF
GPT_SIGNATURE = b"EFI PART"
ESP_GUID = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
# Bytes a caller reads from a raw disk for ``has_efi_partition``: the MBR, the GPT header
# and 128 entries of 128 bytes.
PARTITION_TABLE_BYTES = 2 * SECTOR + 128 * 128


class DiskFormatError(ValueError):
    """The bytes are not what their format says; the message says what is wrong."""


@dataclass(frozen=True)
class Qcow2Header:
    version: int
    backing_file: bool
    external_data_file: bool
    size: int  # the virtual disk's bytes


def is_qcow2(head: bytes) -> bool:
    return head[:4] == QCOW2_MAGIC


def parse_qcow2_header(head: bytes) -> Qcow2Header:
    """The facts of a qcow2 header an import checks; DiskFormatError for a truncated one."""
    if not is_qcow2(head):
        raise DiskFormatError("not a qcow2 image")
    if len(head) < 72:
        raise DiskFormatError("the qcow2 header is truncated")
    version, backing_offset, backing_size = struct.unpack_from(">IQI", head, 4)
    size, = struct.unpack_from(">Q", head, 24)
    if version not in (2, 3):
        raise DiskFormatError(f"qcow2 version {version} is not supported")
    incompatible = 0
    if version == 3:
        if len(head) < QCOW2_HEADER:
            raise DiskFormatError("the qcow2 header is truncated")
        incompatible, = struct.unpack_from(">Q", head, 72)
    return Qcow2Header(version=version, backing_file=backing_offset != 0 or backing_size != 0,
                       external_data_file=bool(incompatible & _INCOMPAT_DATA_FILE), size=size)


def _mbr_types(head: bytes) -> list[int] | None:
    """The partition types of the MBR in ``head``, None without an MBR signature."""
    if len(head) < SECTOR or head[510:512] != MBR_SIGNATURE:
        return None
    return [head[446 + 16 * index + 4] for index in range(4)]


def has_partition_table(head: bytes) -> bool:
    """Whether ``head`` (the first sector at least) starts a partitioned disk."""
    types = _mbr_types(head)
    return types is not None and any(types)


def has_efi_partition(head: bytes) -> bool:
    """Whether the disk starting with ``head`` (PARTITION_TABLE_BYTES of it) has an EFI system
    partition, in its GPT or its MBR. Entries past ``head`` are not looked at."""
    types = _mbr_types(head)
    if types is None:
        return False
    if MBR_EFI_SYSTEM in types:
        return True
    if MBR_GPT_PROTECTIVE not in types or head[SECTOR:SECTOR + 8] != GPT_SIGNATURE:
        return False
    entries_lba, count, entry_size = struct.unpack_from("<QII", head, SECTOR + 72)
    if entry_size < 16:
        return False
    start = entries_lba * SECTOR
    for index in range(count):
        offset = start + index * entry_size
        if offset + 16 > len(head):
            break
        if uuid.UUID(bytes_le=bytes(head[offset:offset + 16])) == ESP_GUID:
            return True
    return False
