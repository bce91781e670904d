"""Pure: which guest pages an inflating balloon takes, and how much host memory that frees.

Guest (Linux 6.1 / 6.12, drivers/virtio/virtio_balloon.c fill_balloon ->
mm/balloon_compaction.c balloon_page_alloc): one order-0 page at a time,
GFP_HIGHUSER_MOVABLE | __GFP_NOMEMALLOC | __GFP_NORETRY. mm/page_alloc.c serves
an order-0 movable request from the CPU's per-cpu list, refilled by rmqueue_bulk
-> __rmqueue_smallest: the lowest order whose MOVABLE free list is not empty,
the list's head block, split by expand() whose remainders go to the lower lists
and are taken next. So free memory is eaten one whole free block at a time,
smallest order first; zones in zonelist order (Normal, then DMA32; ZONE_DMA is
kept out by lowmem_reserve). Which blocks of one order come first the model
cannot know: the list order, and which blocks sit on MOVABLE lists at all
(/proc/pagetypeinfo gives per-order counts per migratetype, kpageflags no
migratetype). The interval covers every choice.

Host (QEMU hw/virtio/virtio-balloon.c balloon_inflate_page): with 4 KiB host
pages each page is discarded at once (ram_block_discard_range), so RSS drops by
the pages the host held. With bigger host pages (hugetlbfs) QEMU gathers
sub-pages per virtqueue element, and an element carries at most 256 PFNs
(VIRTIO_BALLOON_ARRAY_PFNS_MAX) < 512 sub-pages of a 2 MiB page: nothing is
ever discarded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PAGE = 4096
MIB_PAGES = 256
ZONE_ORDER = ("Normal", "DMA32")  # zonelist order of a movable allocation; DMA never (lowmem_reserve)
ARRAY_PFNS_MAX = 256  # include/linux/virtio_balloon.c VIRTIO_BALLOON_ARRAY_PFNS_MAX
MAX_ORDER = 10


@dataclass(frozen=True)
class FreeBlock:
    zone: str
    order: int
    held: int  # pages of the block the host held (QEMU pagemap)


@dataclass(frozen=True)
class PageTerm:
    """One thing the model cannot know, as pages the hand-over of held pages may move by."""
    name: str
    lo: int  # <= 0
    hi: int  # >= 0
    explanation: str

    def to_json(self) -> dict:
        return {"name": self.name, "lo_mib": round(self.lo / MIB_PAGES, 2), "hi_mib": round(self.hi / MIB_PAGES, 2),
                "explanation": self.explanation}


@dataclass(frozen=True)
class InflatePrediction:
    pages: int  # asked of the guest
    taken_free: int  # pages the model takes from free blocks (the rest from per-cpu lists / reclaim)
    held_expected: float  # held pages among those the guest hands over
    held_lo: int
    held_hi: int
    discard: bool  # QEMU discards what it gets (4 KiB host pages)
    terms: tuple[PageTerm, ...] = field(default=())
    tiers: tuple[dict, ...] = field(default=())

    @property
    def expected_mib(self) -> float:
        return self.held_expected / MIB_PAGES if self.discard else 0.0

    def interval_mib(self, noise_mib: float) -> tuple[float, float]:
        """RSS drop interval: the held pages handed over (0 without discard) +- RSS noise."""
        if not self.discard:
            return -noise_mib, noise_mib
        return self.held_lo / MIB_PAGES - noise_mib, self.held_hi / MIB_PAGES + noise_mib

    def to_json(self, noise_mib: float) -> dict:
        lo, hi = self.interval_mib(noise_mib)
        return {"pages": self.pages, "taken_free": self.taken_free, "held_expected": round(self.held_expected, 1),
                "held_lo": self.held_lo, "held_hi": self.held_hi, "discard": self.discard,
                "expected_mib": round(self.expected_mib, 2), "lo_mib": round(lo, 2), "hi_mib": round(hi, 2),
                "terms": [t.to_json() for t in self.terms]
                + [{"name": "rss_noise", "lo_mib": -noise_mib, "hi_mib": noise_mib,
                    "explanation": "measured RSS noise of an idle guest (input)"}],
                "tiers": list(self.tiers)}


def _extremes(helds: list[int], size: int, take: int) -> tuple[int, int]:
    """Fewest and most held pages among `take` pages eaten from blocks of `size` pages with
    these held counts, whole blocks first, the last one partly (its held pages may be in
    the part taken or not)."""
    full, part = divmod(take, size)
    asc, desc = sorted(helds), sorted(helds, reverse=True)

    def best(order_):
        s = sum(order_[:full])
        if part and full < len(order_):
            rest = order_[full:]
            # the partial block: fewest held = a block whose held pages fit in the part left behind
            pick = min(rest) if order_ is asc else max(rest)
            s += max(0, pick - (size - part)) if order_ is asc else min(pick, part)
        return s
    return best(asc), best(desc)


@dataclass(frozen=True)
class _Ranked:
    exp: float
    lo: int
    hi: int
    remaining: int  # pages beyond the free movable blocks
    tiers: tuple


def _rank(blocks: list[FreeBlock], pages: int, movable: dict | None) -> _Ranked:
    """Eat `pages` from the free blocks as __rmqueue_smallest does: zone by zone, order by order."""
    tiers = []
    remaining = max(0, pages)
    exp, lo, hi = 0.0, 0, 0
    for zone in ZONE_ORDER:
        for order in range(MAX_ORDER + 1):
            if remaining <= 0:
                break
            helds = [b.held for b in blocks if b.zone == zone and b.order == order]
            if not helds:
                continue
            n_mov = len(helds) if movable is None else min(len(helds), movable.get((zone, order), 0))
            size = 1 << order
            take = min(remaining, n_mov * size)
            if take <= 0:
                continue
            a, b = _extremes(helds, size, take)
            # Expected: held blocks first. Free lists are LIFO (__free_one_page adds a freed
            # block at the head), boot memory went to the tail (__free_pages_core, FPI_TO_TAIL)
            # and so do reported blocks (page_reporting_drain); a block the host holds was
            # written since boot, so it was freed after the untouched ones. Measured (6.1,
            # reporting off): 59 of the 61 held order-10 blocks went before any of 153 untouched
            # ones but 5; hence the interval keeps every order (block_choice).
            exp += b
            lo, hi = lo + a, hi + b
            tiers.append({"zone": zone, "order": order, "blocks": len(helds), "movable": n_mov, "pages": take,
                          "held_min": a, "held_max": b})
            remaining -= take
    return _Ranked(exp, lo, hi, remaining, tuple(tiers))


def predict_inflate(blocks: list[FreeBlock], pages: int, movable: dict | None = None,
                    pcp_max: int = 0, host_page_size: int = PAGE) -> InflatePrediction:
    """blocks: the guest's free blocks right before inflating, with host residency.
    pages: pages asked. movable: {(zone, order): free blocks on MOVABLE lists} from
    pagetypeinfo (None: every free block is movable). pcp_max: the most pages one CPU
    has on its per-cpu lists (zoneinfo `count`, every list of the CPU: an upper bound).

    Per-cpu lists: the balloon worker runs on one CPU (a bound workqueue) and takes the P
    pages already on that CPU's list first (allocation takes the head; rmqueue_bulk
    refills at the tail, so the refills come in the blocks' order and what is left on
    the list at the end is the last of them). The balloon is thus P pcp pages (held or
    not) + the first pages - P of the ranking, P in [0, pcp_max]: held pages in
    [lo(pages - pcp_max), hi(pages - pcp_max) + pcp_max] (lo grows with the pages eaten,
    and each page eaten adds at most one held page to hi)."""
    full = _rank(blocks, pages, movable)
    short = _rank(blocks, pages - pcp_max, movable) if pcp_max else full
    lo, hi = short.lo, short.hi + pcp_max
    terms = [PageTerm("block_choice", round(full.lo - full.exp), round(full.hi - full.exp),
                      "which free blocks of one order the allocator meets first (list order, and which "
                      "blocks are on MOVABLE lists: pagetypeinfo counts them, kpageflags does not say which)")]
    if pcp_max:
        terms.append(PageTerm("pcp_pages", lo - full.lo, hi - full.hi,
                              f"up to {pcp_max} pages on the worker CPU's per-cpu lists go first, held or not, "
                              "and as many of the blocks' pages are not reached"))
    if full.remaining > 0:
        # beyond the free movable blocks: reclaim (page cache) or other migratetypes
        terms.append(PageTerm("reclaim", 0, full.remaining,
                              f"{full.remaining} pages beyond the free movable blocks come from reclaim "
                              "or other lists, held or not"))
        hi += full.remaining
    return InflatePrediction(pages, pages - full.remaining, full.exp, max(0, lo), min(pages, hi),
                             hugetlb_discards(host_page_size), tuple(terms), full.tiers)


def hugetlb_discards(host_page_size: int, pfns_per_element: int = ARRAY_PFNS_MAX) -> bool:
    """QEMU completes a host page only if one virtqueue element carries all its sub-pages."""
    return host_page_size // PAGE <= pfns_per_element


def deflate_completes(blocks: list[tuple[int, int, bool, int]], released: list[tuple[int, int]],
                      pcp_pages: int, order: int) -> int:
    """Pure: at most how many host-held pages a deflate can bring into reportable blocks.

    blocks: the guest's free blocks before the deflate as (head pfn, order, reported, held
    pages); released: the pfn runs leaving the balloon (not held: discarded at inflate);
    pcp_pages: pages on the per-cpu lists (zoneinfo `count`, every CPU), which /proc cannot
    place. A released page merges only within its `order`-aligned region, so only the
    unreported free blocks below `order` in those regions, and the pcp pages the deflate's
    frees can drain (free_pcppages_bulk, once the lists pass `high`), can form new reported
    blocks whose held pages QEMU discards. A reported block holds nothing. A failing CI run
    saw RSS 6.0 MiB down during a deflate that was judged against noise alone."""
    size = 1 << order
    regions = {p >> order for s, e in released for p in range(s & ~(size - 1), e, size)}
    held = sum(h for head, o, rep, h in blocks if o < order and not rep and head >> order in regions)
    return held + pcp_pages
