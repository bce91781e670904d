"""Free page hinting during a live migration: which blocks the guest hints, and so the pages
migrated as normal and as zero with and without hinting, and the source's RSS rise. Pure.

Rules, each from the source named (Linux 6.1.176 / 6.12 drivers/virtio/virtio_balloon.c,
mm/page_alloc.c; QEMU 7.2 / 10.0 hw/virtio/virtio-balloon.c, migration/ram.c):
- Which blocks: on each new cmd_id the guest allocates blocks of order
  VIRTIO_BALLOON_HINT_BLOCK_ORDER = 10 with __GFP_NORETRY|__GFP_NOWARN|__GFP_NOMEMALLOC
  (get_free_page_and_send) until an allocation fails, and holds them until DONE. No zone
  modifier: highest_zoneidx = ZONE_NORMAL, zonelist Normal -> DMA32 -> DMA; no reclaim, so
  the slow path's ALLOC_WMARK_MIN decides: a zone gives a block while
  free - (1024 - 1) > min + lowmem_reserve[ZONE_NORMAL] (__zone_watermark_ok) and it has a
  free order-10 block. Blocks of lower order are never hinted (no splitting up, MAX order).
- Which pages cost what: round 1 sends every page of the RAM blocks whose bit is still set:
  a page with a non-zero byte as `normal`, an all-zero page as `duplicate`
  (save_zero_page). A hint clears the block's pages from the bitmap before the scan reaches
  them (qemu_guest_free_page_hint), so they are not sent in round 1.
- init_on_alloc (Debian's CONFIG_INIT_ON_ALLOC_DEFAULT_ON=y; the guest prints
  "mem auto-init: ... heap alloc:on"): the allocation zeroes each hinted block
  (post_alloc_hook -> kernel_init_pages). Those writes land in the dirty log after the first
  sync, so round 2 sends every hinted page again, now zero: `duplicate`. Hinting therefore
  moves a hinted page that held non-zero data from `normal` to `duplicate`, leaves a hinted
  zero page a zero page, and makes the host fault in every hinted page it did not hold.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.model.errors import ModelError

HINT_ORDER = 10
HINT_PAGES = 1 << HINT_ORDER
ZONE_NORMAL = 2  # index in lowmem_reserve[] (include/linux/mmzone.h: DMA, DMA32, NORMAL, MOVABLE, ...)
ZONELIST = ("Normal", "DMA32", "DMA")  # a ZONE_NORMAL request's fallback order on node 0
PAGE_MIB = 4096 / (1 << 20)


@dataclass(frozen=True)
class HintZone:
    name: str
    free: int  # NR_FREE_PAGES (zoneinfo "pages free")
    min: int  # min_wmark_pages (zoneinfo "min", boost included)
    reserve: int  # lowmem_reserve[ZONE_NORMAL] (zoneinfo "protection" index 2)
    blocks: tuple[int, ...]  # heads of the zone's free order-10 blocks


@dataclass(frozen=True)
class PreMigration:
    """The state before `migrate` (harness/scenarios/hint_migrate.py pre_migration_state)."""
    ram_pages: int  # pages of the guest RAM block (migration scans all of it)
    other_ram_pages: int  # pages of every other RAM block (ROMs, ACPI tables): contents unread
    nonzero: bytes  # nonzero[pfn] = 1: the host's page holds a non-zero byte
    held: bytes  # held[pfn] = 1: the host holds the page (pagemap)
    zones: tuple[HintZone, ...]
    init_on_alloc: bool


@dataclass(frozen=True)
class Term:
    name: str
    lo: float  # pages (or MiB for the RSS figures), added to the expected value
    hi: float
    why: str

    def to_json(self, scale: float = 1.0) -> dict:
        return {"name": self.name, "lo": round(self.lo * scale, 2), "hi": round(self.hi * scale, 2),
                "explanation": self.why}


@dataclass(frozen=True)
class Figure:
    expected: float
    terms: tuple[Term, ...]

    @property
    def lo(self) -> float:
        return self.expected + sum(t.lo for t in self.terms)

    @property
    def hi(self) -> float:
        return self.expected + sum(t.hi for t in self.terms)

    def judge(self, measured: float) -> str:
        return "within" if self.lo <= measured <= self.hi else "outside"

    def to_json(self, scale: float = 1.0) -> dict:
        return {"expected": round(self.expected * scale, 2), "lo": round(self.lo * scale, 2),
                "hi": round(self.hi * scale, 2), "terms": [t.to_json(scale) for t in self.terms]}


def taken(z: HintZone) -> int:
    """Blocks the zone gives before the min watermark stops it (mm/page_alloc.c __zone_watermark_ok)."""
    k = 0
    while k < len(z.blocks) and z.free - k * HINT_PAGES - (HINT_PAGES - 1) > z.min + z.reserve:
        k += 1
    return k


@dataclass(frozen=True)
class Hinted:
    """The hinted set: every zone's taken blocks; where a zone gives fewer blocks than it has,
    which ones is the free list's order (unknown here), so per-block sums get a range."""
    per_zone: tuple[tuple[str, int, int], ...]  # (zone, blocks taken, free order-10 blocks)
    blocks: tuple[int, ...]  # heads of the blocks surely taken (zones that give all they have)
    partial: tuple[tuple[int, tuple[int, ...]], ...]  # (k, candidate heads) where k < candidates

    @property
    def pages(self) -> int:
        return (len(self.blocks) + sum(k for k, _ in self.partial)) * HINT_PAGES

    def sum_of(self, per_block) -> tuple[int, int, int]:
        """(min, nominal, max) over the choices of Σ per_block(head); nominal: the mean choice."""
        sure = sum(per_block(h) for h in self.blocks)
        lo = hi = nom = sure
        for k, cands in self.partial:
            vals = sorted(per_block(h) for h in cands)
            lo += sum(vals[:k])
            hi += sum(vals[len(vals) - k:])
            nom += round(sum(vals) * k / len(vals))
        return lo, nom, hi


def hinted(zones: tuple[HintZone, ...]) -> Hinted:
    per, sure, partial = [], [], []
    for z in zones:
        k = taken(z)
        per.append((z.name, k, len(z.blocks)))
        if k == len(z.blocks):
            sure += z.blocks
        elif k:
            partial.append((k, z.blocks))
    return Hinted(tuple(per), tuple(sorted(sure)), tuple(partial))


def _count(bits: bytes, head: int) -> int:
    return bits[head:head + HINT_PAGES].count(1)


def scanned_before_hints_max(h: Hinted, scanned: int) -> int:
    """Pages of hinted blocks the first round may have sent before their hint arrived, given
    that it had sent `scanned` pages (normal + duplicate) when the guest stopped hinting.
    The scan runs up the RAM block from offset 0 (migration/ram.c find_dirty_block) and skips
    cleared pages, so it reached at most the offset X where X - (hinted pages below X) =
    scanned, counting every candidate block as hinted (the farthest it can be)."""
    heads = sorted(set(h.blocks) | {b for _, c in h.partial for b in c})
    x, cleared = scanned, 0
    for b in heads:
        if b >= x:
            break
        cleared += HINT_PAGES
        x = scanned + cleared
    return sum(min(HINT_PAGES, max(0, x - b)) for b in heads if b < x)


@dataclass(frozen=True)
class HintPrediction:
    hinting: bool
    hinted: Hinted
    hinted_mib: Figure  # what the guest holds while hinting (MemFree drop), MiB
    normal: Figure  # pages
    duplicate: Figure  # pages
    rss_rise_mib: Figure  # the source's guest RAM mapping while hinting
    nonzero_pages: int
    hinted_nonzero: tuple[int, int, int]
    hinted_absent: tuple[int, int, int]

    def to_json(self) -> dict:
        return {"hinting": self.hinting, "hinted_blocks": list(self.hinted.per_zone),
                "hinted_mib": self.hinted_mib.to_json(), "normal_pages": self.normal.to_json(),
                "duplicate_pages": self.duplicate.to_json(),
                "normal_mib": self.normal.to_json(PAGE_MIB), "duplicate_mib": self.duplicate.to_json(PAGE_MIB),
                "rss_rise_mib": self.rss_rise_mib.to_json(), "nonzero_pages": self.nonzero_pages,
                "hinted_nonzero_pages": list(self.hinted_nonzero), "hinted_absent_pages": list(self.hinted_absent)}


def predict(s: PreMigration, hinting: bool, *, resent_pages: int, scanned_at_hint_end: int,
            noise_mib: float, alloc_noise_mib: float) -> HintPrediction:
    """The migration's page counts and the source's RSS rise, from the state before it.

    resent_pages: pages sent beyond one pass over the RAM blocks (normal + duplicate - all
      pages, and minus the hinted pages init_on_alloc makes round 2 send again): the guest's
      own writes during the migration, measured in the run; each lands in normal or duplicate.
    scanned_at_hint_end: normal + duplicate when the guest had stopped hinting.
    noise_mib: RSS noise of the idle guest's RAM mapping (measured); alloc_noise_mib: guest
      allocations and frees between the state's read and the hints (bounds MemFree's drop)."""
    if len(s.nonzero) < s.ram_pages or len(s.held) < s.ram_pages:
        raise ModelError("hinting: the content and residency maps do not cover guest RAM")
    nz = s.nonzero[:s.ram_pages].count(1)
    total = s.ram_pages + s.other_ram_pages
    other = Term("other_ram_blocks", 0, s.other_ram_pages,
                 f"{s.other_ram_pages} pages of ROM/ACPI RAM blocks, contents not read: each is normal or zero")
    resent = Term("resent_dirty", 0, resent_pages,
                  f"{resent_pages} pages the guest wrote during the migration, sent again (measured: "
                  "pages sent - pages of the RAM blocks - hinted pages zeroed): normal or zero")
    h = hinted(s.zones) if hinting else Hinted((), (), ())
    hnz = h.sum_of(lambda b: _count(s.nonzero, b))
    habs = h.sum_of(lambda b: HINT_PAGES - _count(s.held, b))
    def choice(lnh: tuple[int, int, int], sign: int = 1) -> Term:
        lo, nom, hi = lnh  # a sum over the blocks taken; sign -1: the sum is subtracted
        a, b = (lo - nom, hi - nom) if sign > 0 else (nom - hi, nom - lo)
        return Term("block_choice", a, b, "a zone stopped by its min watermark gives k of its n free "
                    "order-10 blocks; which k is the free list's order (range over the choices)")

    if not hinting:
        normal = Figure(nz, (other, resent))
        dup = Figure(total - nz, (Term("other_ram_blocks", -s.other_ram_pages, 0, other.why), resent))
        rise = Figure(0, (Term("rss_noise", -noise_mib, noise_mib, "measured RSS noise of the idle guest's RAM mapping"),))
        held_mib = Figure(0, (Term("guest_allocations", -alloc_noise_mib, alloc_noise_mib,
                                   "MemFree moves by the guest's own allocations and frees"),))
        return HintPrediction(False, h, held_mib, normal, dup, rise, nz, hnz, habs)
    e = scanned_before_hints_max(h, scanned_at_hint_end)
    early = Term("scanned_before_hints", 0, e,
                 f"the throttled first round had sent {scanned_at_hint_end} pages when hinting ended: at most {e} "
                 "of them in hinted blocks, sent in round 1 before their hint and again in round 2")
    normal = Figure(nz - hnz[1], (other, resent, choice(hnz, -1), early))
    if s.init_on_alloc:
        dup = Figure(total - nz + hnz[1], (Term("other_ram_blocks", -s.other_ram_pages, 0, other.why), resent,
                                           choice(hnz), early))
        rise_exp, rise_choice = habs[1] * PAGE_MIB, tuple(v * PAGE_MIB for v in habs)
    else:
        hz = h.sum_of(lambda b: HINT_PAGES - _count(s.nonzero, b))
        dup = Figure(total - nz - hz[1], (Term("other_ram_blocks", -s.other_ram_pages, 0, other.why), resent,
                                          choice(hz, -1), early))
        rise_exp, rise_choice = 0.0, (0.0, 0.0, 0.0)
    rise = Figure(rise_exp, (Term("rss_noise", -noise_mib, noise_mib, "measured RSS noise of the idle guest's RAM mapping"),
                             Term("block_choice", rise_choice[0] - rise_exp, rise_choice[2] - rise_exp,
                                  "which blocks a watermark-stopped zone gives (their absent pages differ)")))
    held_mib = Figure(h.pages * PAGE_MIB, (Term("guest_allocations", -alloc_noise_mib, alloc_noise_mib,
                                                "MemFree moves by the guest's own allocations and frees"),))
    return HintPrediction(True, h, held_mib, normal, dup, rise, nz, hnz, habs)
