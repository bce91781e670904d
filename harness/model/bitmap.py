"""What-if: the unmerged per-zone bitmap design (seed 001, Nitesh Narayan Lal's "page_hinting"
RFC v11, 2019) on the same release the merged design (mm/page_reporting.c) is predicted for. Pure.

What seed 001 shows of the design: per zone a bitmap with one bit per block of
PAGE_HINTING_MIN_ORDER pages (`bitmap_size = (spanned >> PAGE_HINTING_MIN_ORDER) + 1`, sized
by the zone's *spanned* pages: "This doesn't support sparse zones"), a count of free pages
recorded in it (`atomic_t free_pages`), and no change to the buddy lists ("doesn't touch
core-mm"). "1 bit for 2MB" fixes the minimum order at 9. The rest is assumed and named in
BitmapParams: a free of a block of order >= the minimum (after merging) sets the bit of its
head; when a zone's recorded pages reach `threshold_blocks` minimum blocks, a worker scans
that zone's whole bitmap at once, isolates every recorded head that is still a free block of
order >= the minimum and reports it in batches of `capacity`, with no delay and no budget.

What follows from that, against the merged design, on one release:
- Same blocks: both report the free blocks >= order 9 the release left resident.
- Timing: one scan right after the threshold is crossed, against 2 s of delay and then
  budget-limited passes (~256 MiB per 2 s in a 2 GiB guest).
- Misses: memory free since before the driver registered is never recorded (never "freed"),
  so a bitmap guest never reports its boot-time free memory; the merged design's boot-time
  passes do. On the host that costs nothing for pages never touched, and everything for pages
  the boot touched and freed (initramfs unpacking): they stay resident.
- Re-reports: the bitmap has no "reported" state (the merged design marks PG_reported), so a
  reported block that is freed again is reported again; a stale bit (block allocated before
  the scan) costs a failed isolation.
- Sparse zones: the bitmap costs spanned/2^min_order bits however few pages are present.
"""
from __future__ import annotations

from dataclasses import dataclass

PAGE_MIB = 4096 / (1 << 20)


@dataclass(frozen=True)
class BitmapParams:
    min_order: int = 9  # seed 001: "1 bit for 2MB"
    threshold_blocks: int = 16  # assumed: recorded blocks of min order per zone before a scan
    capacity: int = 16  # assumed: blocks per report batch (the batches go back to back)
    latency_s: float = 0.0  # assumed: the worker runs as soon as the threshold is crossed


@dataclass(frozen=True)
class ZoneSpan:
    name: str
    spanned: int
    present: int


@dataclass(frozen=True)
class BitmapPrediction:
    reported_mib: float  # the host's drop: recorded blocks' pages the host held
    recorded_mib: float  # blocks recorded by the release's frees
    unrecorded_free_mib: float  # free blocks >= min order the bitmap never saw (free since boot)
    below_threshold: tuple[str, ...]  # zones whose recorded pages never reached the threshold
    curve: tuple[tuple[float, float], ...]
    bitmap_bytes: dict  # zone -> bytes of its bitmap
    present_share: dict  # zone -> present / spanned (sparse zones pay for their holes)
    batches: int

    def to_json(self) -> dict:
        return {"reported_mib": round(self.reported_mib, 1), "recorded_mib": round(self.recorded_mib, 1),
                "unrecorded_free_mib": round(self.unrecorded_free_mib, 1), "below_threshold": list(self.below_threshold),
                "curve": [[t, round(m, 1)] for t, m in self.curve], "bitmap_bytes": self.bitmap_bytes,
                "present_share": self.present_share, "batches": self.batches}


def predict(blocks, held: bytes, zones: list[ZoneSpan], params: BitmapParams = BitmapParams()) -> BitmapPrediction:
    """blocks: the guest's free blocks right after the release (perblock.Block: head, order,
    reported, zone); held: held[pfn] = 1 if the host held the page then. A free block the host
    holds was freed by the release (the scenario starts once every earlier free block was
    reported, so discarded); one it does not hold has been free since before."""
    big = [b for b in blocks if b.order >= params.min_order]
    recorded = [b for b in big if held[b.head:b.head + (1 << b.order)].count(1)]
    per_zone: dict[str, list] = {}
    for b in recorded:
        per_zone.setdefault(b.zone, []).append(b)
    need = params.threshold_blocks << params.min_order
    scanned = {z: bs for z, bs in per_zone.items() if sum(1 << b.order for b in bs) >= need}
    below = tuple(sorted(set(per_zone) - set(scanned)))
    pages = sum(held[b.head:b.head + (1 << b.order)].count(1) for bs in scanned.values() for b in bs)
    n_blocks = sum(len(bs) for bs in scanned.values())
    curve = ((params.latency_s, pages * PAGE_MIB),) if pages else ()
    return BitmapPrediction(
        reported_mib=pages * PAGE_MIB,
        recorded_mib=sum(1 << b.order for b in recorded) * PAGE_MIB,
        unrecorded_free_mib=sum(1 << b.order for b in big if b not in recorded) * PAGE_MIB,
        below_threshold=below, curve=curve,
        bitmap_bytes={z.name: ((z.spanned >> params.min_order) + 1 + 7) // 8 for z in zones},
        present_share={z.name: round(z.present / z.spanned, 3) if z.spanned else 0.0 for z in zones},
        batches=-(-n_blocks // params.capacity))


def compare(merged_curve, merged_mib: float, b: BitmapPrediction) -> list[str]:
    """Pure: where the two designs differ on this release, in words."""
    out = []
    t90 = next((t for t, m in merged_curve if m >= 0.9 * merged_mib), None) if merged_mib > 0 else None
    out.append(f"total: merged {merged_mib:.1f} MiB, bitmap {b.reported_mib:.1f} MiB "
               f"({'the same blocks' if abs(merged_mib - b.reported_mib) < 8 else 'different blocks'})")
    if b.curve:
        out.append(f"timing: bitmap all at {b.curve[0][0]:g} s in one scan ({b.batches} batches back to back); "
                   f"merged 90% after {t90} s (2 s delay, then budget-limited passes)")
    if b.below_threshold:
        out.append(f"below the scan threshold, never reported by the bitmap: zones {', '.join(b.below_threshold)}")
    out.append(f"free blocks the bitmap never recorded (free since before this release): "
               f"{b.unrecorded_free_mib:.0f} MiB; the merged design reported them in its boot-time passes")
    out.append("bitmap memory: " + ", ".join(f"{z} {n} B (present/spanned {b.present_share[z]})"
                                             for z, n in b.bitmap_bytes.items()))
    return out
