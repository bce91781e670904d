"""What QEMU does with a report, and what that gives back on the host.

QEMU hw/virtio/virtio-balloon.c virtio_balloon_handle_report (same in 7.2 and
10.0): when virtio_balloon_inhibited() (discard disabled by VFIO/vdpa/SEV/...,
incoming postcopy, background snapshot) or the guest set a non-zero
poison_val, the whole element is skipped; otherwise every range that is
aligned to qemu_ram_pagesize(rb) and inside used_length goes to
ram_block_discard_range (softmmu/physmem.c): anonymous private RAM ->
MADV_DONTNEED; memfd/shmem -> fallocate(PUNCH_HOLE) (+ MADV_DONTNEED);
hugetlbfs -> PUNCH_HOLE only. Unaligned ranges are ignored silently; the
guest marks the blocks Reported anyway (virtqueue_push is unconditional).

A discard returns only what is resident: the host keeps a map of which guest
pages are backed (ResidentMap), fed by the workload's touches or by QEMU's
/proc/PID/pagemap. Hugetlb pages are not in Rss (they show as
Private/Shared_Hugetlb), so for hugetlb backing the process RSS does not move
while the guest RAM mapping does (unverified here: measure).
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.model.errors import ModelError

PAGE = 4096
MIB = 1 << 20


@dataclass(frozen=True)
class HostConfig:
    """How guest RAM is backed and whether QEMU may discard at all."""
    backend: str = "anon"             # "anon" (private), "memfd" (share=on), "hugetlbfs"
    page_size: int = PAGE             # qemu_ram_pagesize(rb): 4 KiB, 2 MiB or 1 GiB
    discard_inhibited: bool = False   # virtio_balloon_inhibited()
    poison_val: int = 0               # guest's VIRTIO_BALLOON_F_PAGE_POISON value
    thp: bool = True                  # anon: QEMU madvises RAM huge; a first touch faults a 2 MiB THP

    def __post_init__(self):
        if self.backend not in ("anon", "memfd", "hugetlbfs"):
            raise ModelError(f"unknown backend {self.backend!r}")
        if self.page_size not in (PAGE, 2 * MIB, 1024 * MIB):
            raise ModelError(f"host page size {self.page_size} is not 4K, 2M or 1G")
        if self.backend == "hugetlbfs" and self.page_size == PAGE:
            raise ModelError("hugetlbfs backing needs a 2M or 1G page size")
        if self.backend == "anon" and self.page_size != PAGE:
            raise ModelError("anonymous RAM has 4K pages (use hugetlbfs or memfd,hugetlb=on)")

    @property
    def hugetlb(self) -> bool:
        return self.page_size > PAGE

    @property
    def granule(self) -> int:
        """Pages that become resident together on a first touch."""
        if self.hugetlb:
            return self.page_size // PAGE
        return 512 if (self.backend == "anon" and self.thp) else 1

    @property
    def discards(self) -> bool:
        return not self.discard_inhibited and self.poison_val == 0


class ResidentMap:
    """Which guest pfns are backed by host memory: one byte per guest page.

    A bytearray so that marking and counting a range are single C calls: a
    64 GiB guest costs 16 MiB here. Change it through the methods, not .bits:
    touch_runs and Simulation keep track of what is known resident.
    """

    def __init__(self, nr_pages: int, resident: bool = False):
        self.bits = bytearray([1 if resident else 0]) * nr_pages
        # per granule size: 1 = every page of that granule is known resident. Only clear()
        # takes residency away, and it resets the flags, so a 1 is always true (a 0 may be
        # stale: it only sends touch_runs the slow way). Write bits through the methods.
        self._full: dict[int, bytearray] = {}
        self.clears = 0            # clear() calls that dropped residency (a Simulation notices others')

    @classmethod
    def from_ranges(cls, nr_pages: int, ranges) -> "ResidentMap":
        m = cls(nr_pages)
        for pfn, n in ranges:
            m.set(pfn, n)
        return m

    @classmethod
    def from_bytes(cls, held, nr_pages: int | None = None) -> "ResidentMap":
        """From a per-pfn 0/1 byte string (harness.measure.perblock.Capture.held, built from QEMU's pagemap)."""
        m = cls(max(len(held), nr_pages or 0))
        m.bits[:len(held)] = bytes(held)
        if m.bits.strip(b"\x00\x01"):
            raise ModelError("residency bytes must be 0 or 1")
        return m

    def copy(self) -> "ResidentMap":
        m = ResidentMap(0)
        m.bits = bytearray(self.bits)
        return m

    def __len__(self):
        return len(self.bits)

    def _check(self, pfn: int, n: int) -> None:
        if pfn < 0 or n < 0 or pfn + n > len(self.bits):
            raise ModelError(f"range {pfn}+{n} outside guest RAM of {len(self.bits)} pages")

    def count(self, pfn: int, n: int) -> int:
        self._check(pfn, n)
        return self.bits.count(1, pfn, pfn + n)

    def set(self, pfn: int, n: int) -> None:
        self._check(pfn, n)
        self.bits[pfn:pfn + n] = b"\x01" * n

    def clear(self, pfn: int, n: int) -> int:
        """Drop residency of a range; returns how many pages were resident."""
        was = self.count(pfn, n)
        if was:
            self.bits[pfn:pfn + n] = bytes(n)
            self.clears += 1
            for g, full in self._full.items():
                a, b = pfn // g, (pfn + n - 1) // g + 1
                full[a:b] = bytes(b - a)
        return was

    def touch(self, pfn: int, n: int, granule: int = 1) -> None:
        """Guest writes to [pfn, pfn+n): a fault fills a whole granule if none of it was backed
        (a THP or huge page), else only the pages written (a split THP faults 4K)."""
        bits = self.bits
        end = pfn + n
        if pfn < 0 or n < 0 or end > len(bits):
            self._check(pfn, n)
        if granule <= 1:
            bits[pfn:end] = b"\x01" * n
            return
        g = pfn - pfn % granule
        if end <= g + granule and g + granule <= len(bits):     # the common case: one granule
            if bits[pfn] or bits.count(1, g, g + granule):
                bits[pfn:end] = b"\x01" * n
            else:
                bits[g:g + granule] = b"\x01" * granule
            return
        while g < end:
            ge = g + granule
            if ge > len(bits):
                ge = len(bits)
            if bits.count(1, g, ge) == 0:
                bits[g:ge] = b"\x01" * (ge - g)
            else:
                s = g if g > pfn else pfn
                e = ge if ge < end else end
                bits[s:e] = b"\x01" * (e - s)
            g = ge

    def touch_runs(self, runs, granule: int = 1) -> None:
        """touch(pfn, n, granule) for each (pfn, n) run of one allocation, in one call.

        A long trace touches millions of runs, mostly single pages just handed back by the
        per-cpu list, whose granule is long since backed: a per-granule flag (a few KiB, where
        the per-page map is MiBs: no cache miss) skips those; a granule seen for the first
        time is faulted here; a run over a granule boundary, or out of range, goes to touch()."""
        bits = self.bits
        size = len(bits)
        if granule <= 1:
            for pfn, n in runs:
                if pfn < 0 or n < 0 or pfn + n > size:
                    self._check(pfn, n)
                bits[pfn:pfn + n] = b"\x01" * n
            return
        full = self._full.get(granule)
        if full is None:
            full = self._full[granule] = bytearray(-(-size // granule))   # a partial last granule stays 0
        for pfn, n in runs:
            gi = pfn // granule
            if 0 <= pfn < size and full[gi] and 0 <= n <= (gi + 1) * granule - pfn:
                continue                                 # inside a granule known resident
            g = gi * granule
            if pfn < 0 or n < 0 or pfn + n > g + granule or g + granule > size:
                self.touch(pfn, n, granule)
            elif bits[pfn] or bits.count(1, g, g + granule):
                bits[pfn:pfn + n] = b"\x01" * n          # the granule is backed: only the pages written
                if bits.find(0, g, g + granule) < 0:
                    full[gi] = 1
            else:
                bits[g:g + granule] = b"\x01" * granule  # a first touch faults the whole granule
                full[gi] = 1

    def total(self) -> int:
        return self.bits.count(1)

    def ranges(self):
        """(pfn, n) runs of resident pages."""
        b, n, i = self.bits, len(self.bits), 0
        while i < n:
            j = b.find(1, i)
            if j < 0:
                return
            k = b.find(0, j)
            k = n if k < 0 else k
            yield j, k - j
            i = k


@dataclass(frozen=True)
class Discard:
    rss_pages: int       # drop of the QEMU process RSS
    mapping_pages: int   # drop of the guest RAM mapping's resident size (hugetlb included)
    ignored_pages: int   # reported but not discarded: unaligned or inhibited


def discard(blocks, host: HostConfig, resident: ResidentMap | None) -> Discard:
    """Apply one report's blocks (pfn, order) on the host.

    Alignment is checked on the guest physical address: QEMU checks
    ram_offset, which equals it below 4 GiB and is shifted by the below-4G
    size above; that size is a multiple of 2 MiB on pc and q35, so a 2 MiB
    decision is the same. With 1 GiB pages no 2/4 MiB report is ever aligned.
    """
    rss = mapping = ignored = 0
    step = host.page_size // PAGE
    for pfn, order in blocks:
        n = 1 << order
        if not host.discards or (pfn % step) or (n % step):
            ignored += n
            continue
        got = resident.clear(pfn, n) if resident is not None else n
        mapping += got
        if not host.hugetlb:
            rss += got
    return Discard(rss, mapping, ignored)
