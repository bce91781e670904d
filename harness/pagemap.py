"""Which guest pages the host holds: QEMU's /proc/PID/pagemap over the guest RAM mapping.

The guest-physical -> host-virtual layout is derived, not assumed: the guest's
/proc/iomem "System RAM" ranges give the guest-physical ranges, QEMU's own
`gpa2hva` (Guest.ram_hva) gives each range's host address, and the range's
last byte is translated too, to prove the range is one contiguous host mapping
(above 4 GiB the PC memory hole makes guest-physical and mapping offset differ).

pagemap is read the same way whatever backs guest RAM (anonymous, memfd, a
file): it describes QEMU's page tables. For an fd backend "present" therefore
means "mapped in QEMU", not "in the file's page cache"; QEMU's discard of such
memory punches the file and zaps the mapping (softmmu/physmem.c
ram_block_discard_range), so both go together.

Entry format (Documentation/admin-guide/mm/pagemap.rst, fs/proc/task_mmu.c
pagemap_read): 64 bits per host page, bit 63 present, bit 62 swapped. A page
counts as held by the host if either is set: a discarded page is neither.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

PAGE = 4096
ENTRY = 8
_HELD = bytes(1 if b & 0xC0 else 0 for b in range(256))  # top byte: bit 7 = present (63), bit 6 = swapped (62)


@dataclass(frozen=True)
class RamRange:
    """Guest pages [pfn, pfn + pages) live at host address hva onward."""
    pfn: int
    pages: int
    hva: int

    @property
    def end(self) -> int:
        return self.pfn + self.pages


def parse_system_ram(iomem: str) -> list[tuple[int, int]]:
    """Pure: /proc/iomem -> whole-page pfn ranges [start, end) of top-level "System RAM".

    Needs root in the guest (otherwise every address reads 0: kernel/resource.c r_show).
    """
    out = []
    for line in iomem.splitlines():
        m = re.fullmatch(r"([0-9a-f]+)-([0-9a-f]+) : System RAM", line.strip()) if not line.startswith(" ") else None
        if m:
            start, last = int(m.group(1), 16), int(m.group(2), 16)
            first_pfn, end_pfn = -(-start // PAGE), (last + 1) // PAGE  # whole pages only
            if end_pfn > first_pfn:
                out.append((first_pfn, end_pfn))
    if not out or all(s == 0 and e == 0 for s, e in out):
        raise ValueError("iomem: no System RAM ranges (read as non-root?)")
    return out


def layout(guest) -> list[RamRange]:
    """The guest's RAM ranges with their host addresses (two gpa2hva per range)."""
    ranges = []
    for start, end in parse_system_ram(guest.run("cat /proc/iomem").stdout):
        hva = guest.ram_hva(start * PAGE)
        last = guest.ram_hva(end * PAGE - 1)
        if last - hva != (end - start) * PAGE - 1:
            raise ValueError(f"guest RAM pfn {start:#x}-{end:#x} is not one contiguous host mapping "
                             f"({hva:#x} .. {last:#x})")
        ranges.append(RamRange(start, end - start, hva))
    return ranges


def held_of(entries: bytes) -> bytes:
    """Pure: raw pagemap entries (little-endian u64) -> one byte per page, 1 if held (present or swapped)."""
    if len(entries) % ENTRY:
        raise ValueError(f"pagemap data of {len(entries)} bytes is not whole entries")
    return entries[ENTRY - 1::ENTRY].translate(_HELD)  # the top byte of each entry, at C speed


def read_held(pid: int, ranges: list[RamRange]) -> bytearray:
    """Host residency of every guest page in `ranges`: out[pfn] = 1 if QEMU holds it.

    Pages outside the ranges read 0. Reading needs only the same uid (PFNs would need
    CAP_SYS_ADMIN; they are not used).
    """
    out = bytearray(max(r.end for r in ranges))
    with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as f:
        for r in ranges:
            f.seek(r.hva // PAGE * ENTRY)
            want, parts = r.pages * ENTRY, []
            while want:
                part = f.read(want)
                if not part:
                    raise OSError(f"pagemap ended early at guest pfn {r.pfn:#x}")
                parts.append(part)
                want -= len(part)
            out[r.pfn:r.end] = held_of(b"".join(parts))
    return out
