"""Which guest pages the host holds: QEMU's /proc/PID/pagemap over the guest RAM mapping.

The guest-physical -> host-virtual layout is derived, not assumed: the guest's
/proc/iomem "System RAM" ranges give the guest-physical ranges, QEMU's own
`gpa2hva` (Guest.ram_hva) gives each range's host address, and the range's
last byte is translated too, to prove the range is one contiguous host mapping
(above 4 GiB the PC memory hole makes guest-physical and mapping offset differ;
with two NUMA nodes a range spans two backends and is split where they meet).

A page counts as held by the host if QEMU's page tables map it or it is swapped
out (pagemap, Documentation/admin-guide/mm/pagemap.rst, fs/proc/task_mmu.c
pagemap_read: 64 bits per host page, bit 63 present, bit 62 swapped), unless what
maps it is the shared zero page or huge zero page (kpageflags KPF_ZERO_PAGE): those
are in no process's RSS, and a restored guest has most of its RAM mapped to them
(QEMU's load of a zero page reads the page, ram_handle_zero / buffer_is_zero, and a
read fault of untouched anonymous memory maps the zero page; measured: 955 huge
zero PMDs in a restored 2 GiB guest, 488960 of its 524158 present pages), or, for
guest RAM backed by a file or memfd, if the file's page cache holds it: a page
of a shared mapping can be unmapped from QEMU yet still in the file (only
MADV_DONTNEED without a hole punch would do that), so pagemap alone would call
it released. QEMU's discard of fd-backed RAM punches a hole and zaps the mapping
(softmmu/physmem.c ram_block_discard_range); both views then agree. The page
cache is read with mincore() on our own read-only mapping of QEMU's file
(/proc/PID/map_files, root only), which faults nothing in; not for hugetlbfs
(see in_page_cache).
"""
from __future__ import annotations

import ctypes
import os
import re
import struct
from dataclasses import dataclass

import numpy as np

PAGE = 4096
ENTRY = 8
_HELD = bytes(1 if b & 0xC0 else 0 for b in range(256))  # top byte: bit 7 = present (63), bit 6 = swapped (62)
# Present but not mapped exclusively (bit 56): the zero pages are among these (no normal page,
# or the huge zero page's mapcount), so only these PFNs are looked up in kpageflags.
_SHARED_PRESENT = bytes(1 if b & 0x81 == 0x80 else 0 for b in range(256))
PFN_MASK = (1 << 55) - 1
KPF_ZERO_PAGE = 24  # include/uapi/linux/kernel-page-flags.h


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


def layout(guest, iomem: str | None = None) -> list[RamRange]:
    """The guest's RAM ranges with their host addresses, split where the host mapping changes
    (one backend per NUMA node: a guest "System RAM" range can span two host mappings).
    iomem: the guest's /proc/iomem when already read (guestfacts.start_facts)."""
    ranges = []
    iomem = guest.run("cat /proc/iomem").stdout if iomem is None else iomem
    for start, end in parse_system_ram(iomem):
        ranges += _contiguous(guest, start, end)
    return ranges


def _contiguous(guest, start: int, end: int) -> list[RamRange]:
    """Pieces of guest pfns [start, end) that are each one contiguous host mapping: a piece is
    contiguous when its first and last byte are as far apart on the host as in the guest;
    otherwise it is halved (a few gpa2hva calls per mapping boundary)."""
    hva = guest.ram_hva(start * PAGE)
    last = guest.ram_hva(end * PAGE - 1)
    if last - hva == (end - start) * PAGE - 1:
        return [RamRange(start, end - start, hva)]
    if end - start == 1:
        raise ValueError(f"guest pfn {start:#x} does not map to one host page ({hva:#x} .. {last:#x})")
    mid = (start + end) // 2
    return _contiguous(guest, start, mid) + _contiguous(guest, mid, end)


def held_of(entries: bytes, zero_pfns=frozenset()) -> bytes:
    """Pure: raw pagemap entries (little-endian u64) -> one byte per page, 1 if held (present
    or swapped), 0 where a present entry maps one of `zero_pfns` (the host's zero pages)."""
    if len(entries) % ENTRY:
        raise ValueError(f"pagemap data of {len(entries)} bytes is not whole entries")
    held = entries[ENTRY - 1::ENTRY].translate(_HELD)  # the top byte of each entry, at C speed
    if not zero_pfns:
        return held
    arr = np.frombuffer(entries, dtype="<u8")
    zero = ((arr >> np.uint64(63)) == 1) & np.isin(arr & np.uint64(PFN_MASK), np.fromiter(zero_pfns, np.uint64))
    return (np.frombuffer(held, dtype=np.uint8) & ~zero).astype(np.uint8).tobytes()


def shared_pfns(entries: bytes) -> set[int]:
    """Pure: the PFNs of present entries not mapped exclusively (the zero pages' candidates)."""
    if not entries[ENTRY - 1::ENTRY].translate(_SHARED_PRESENT).count(1):
        return set()
    arr = np.frombuffer(entries, dtype="<u8")
    top = (arr >> np.uint64(56)).astype(np.uint8)
    return set((arr[(top & 0x81) == 0x80] & np.uint64(PFN_MASK)).tolist())


_zero_known: dict[int, bool] = {}  # pfn -> KPF_ZERO_PAGE, looked up once per process (a zero page stays one)


def zero_pfns_among(pfns: set[int]) -> frozenset[int]:
    """Which of these host PFNs are the zero page or the huge zero page (/proc/kpageflags, root)."""
    new = sorted(p for p in pfns if p not in _zero_known)
    if new:
        with open("/proc/kpageflags", "rb", buffering=0) as f:
            i = 0
            while i < len(new):  # one read per run of consecutive PFNs (the huge zero page is 512)
                j = i
                while j + 1 < len(new) and new[j + 1] == new[j] + 1:
                    j += 1
                f.seek(new[i] * ENTRY)
                data = f.read((j - i + 1) * ENTRY)
                for k, (flags,) in enumerate(struct.iter_unpack("<Q", data)):
                    _zero_known[new[i + k]] = bool(flags >> KPF_ZERO_PAGE & 1)
                i = j + 1
    return frozenset(p for p in pfns if _zero_known.get(p))


def read_held(pid: int, ranges: list[RamRange]) -> bytearray:
    """Host residency of every guest page in `ranges`: out[pfn] = 1 if QEMU holds it
    (mapped, swapped, or in the page cache of the file backing it). Pages outside the
    ranges read 0."""
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
            raw = b"".join(parts)
            out[r.pfn:r.end] = held_of(raw, zero_pfns_among(shared_pfns(raw)))
    for r in ranges:
        for vma_start, vma_end, path, file_off in file_vmas(pid, r.hva, r.hva + r.pages * PAGE):
            lo, hi = max(vma_start, r.hva), min(vma_end, r.hva + r.pages * PAGE)
            cached = in_page_cache(path, file_off + lo - vma_start, (hi - lo) // PAGE)
            first = r.pfn + (lo - r.hva) // PAGE
            n = len(cached)  # both are 0/1 bytes: OR them as big integers
            out[first:first + n] = (int.from_bytes(out[first:first + n], "big")
                                    | int.from_bytes(cached, "big")).to_bytes(n, "big")
    return out


# --- fd-backed guest RAM: the file's page cache ----------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
PROT_READ, MAP_SHARED, MAP_FAILED = 1, 1, ctypes.c_void_p(-1).value
_LOW_BIT = bytes(b & 1 for b in range(256))  # mincore: bit 0 = resident, the others reserved


def file_vmas(pid: int, start: int, end: int) -> list[tuple[int, int, str, int]]:
    """File-backed mappings of `pid` overlapping [start, end): (vma start, vma end,
    /proc/PID/map_files path, file offset of vma start). Anonymous ones (inode 0) are left out."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo < end and hi > start and int(fields[4]) != 0:
                out.append((lo, hi, f"/proc/{pid}/map_files/{lo:x}-{hi:x}", int(fields[2], 16)))
    return out


def in_page_cache(path: str, offset: int, pages: int) -> bytes:
    """One byte per page from `offset` of the file at `path`: 1 if in its page cache (mincore)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if os.fstat(fd).st_blksize > PAGE:
            # hugetlbfs (st_blksize = the huge page size): our mapping would need huge alignment
            # and could reserve huge pages. Skip: pagemap shows QEMU's mapped huge pages, and a
            # hole punch (QEMU's only discard there) unmaps them everywhere as it frees them
            # (fs/hugetlbfs/inode.c hugetlbfs_punch_hole).
            return bytes(pages)
        addr = _libc.mmap(None, pages * PAGE, PROT_READ, MAP_SHARED, fd, offset)
        if addr in (None, MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"mmap {path}")
        try:
            vec = ctypes.create_string_buffer(pages)
            if _libc.mincore(addr, pages * PAGE, vec) != 0:
                raise OSError(ctypes.get_errno(), f"mincore {path}")
            return vec.raw.translate(_LOW_BIT)
        finally:
            _libc.munmap(addr, pages * PAGE)
    finally:
        os.close(fd)
