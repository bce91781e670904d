"""The guest's buddy allocator, in blocks (pfn, order), after mm/page_alloc.c.

Memory is never held page by page: a zone keeps, per order and migratetype, a
free list of block heads (an OrderedDict, head first, value = PageReported),
plus a map head pfn -> (order, list migratetype) for buddy lookups. Allocated
memory is everything that is neither free nor on the per-cpu list.

Rules kept from the kernel (function named next to each in the code):
allocation from the list head, smallest order first, remainders back at the
head (expand); freeing merges with free buddies (pageblock migratetype barrier
at and above pageblock_order) and clears PageReported on every merge
(del_page_from_free_list); buddy_merge_likely puts a block at the tail when
the next-larger merge is one free away; per-cpu lists hold recently freed
order-0 pages away from the buddy lists until they pass `high`.
Deliberate simplifications: one per-cpu list per zone (the workload's CPU,
all migratetypes; THPs as whole order-9 entries) without the free_factor
batch doubling or 6.12's pcp high decay; __rmqueue_fallback moves single
blocks and claims pageblocks only at pageblock_order and above; 6.12's
per-migratetype free accounting and pageblock retyping on merge are left
out; no compaction, reclaim, CMA, or guard pages.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict, deque

from harness.model.errors import ModelError
from harness.model.kernel import KernelSpec

# include/linux/mmzone.h enum migratetype
UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC, CMA, ISOLATE = range(6)
MIGRATE_TYPES = 6
MIGRATE_PCPTYPES = 3
ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable", "Device")
_ZONE_IDX = {n: i for i, n in enumerate(ZONE_NAMES)}

# mm/page_alloc.c fallbacks[MIGRATE_TYPES][3] (6.1)
FALLBACKS = {
    UNMOVABLE: (RECLAIMABLE, MOVABLE),
    MOVABLE: (RECLAIMABLE, UNMOVABLE),
    RECLAIMABLE: (UNMOVABLE, MOVABLE),
}


# (order, migratetype) values of Zone.where, made once: no new tuple per block put on a list
_OM = tuple(tuple((o, m) for m in range(MIGRATE_TYPES)) for o in range(32))


def mergeable(mt: int) -> bool:
    # include/linux/mmzone.h migratetype_is_mergeable(): mt < MIGRATE_PCPTYPES
    return mt < MIGRATE_PCPTYPES


def aligned_blocks(pfn: int, npages: int, max_order: int):
    """Split [pfn, pfn+npages) into the largest naturally aligned blocks, low to high."""
    end = pfn + npages
    while pfn < end:
        o = (pfn & -pfn).bit_length() - 1 if pfn else max_order
        if o > max_order:
            o = max_order
        while (1 << o) > end - pfn:
            o -= 1
        yield pfn, o
        pfn += 1 << o


class Zone:
    """One struct zone: free lists, counters, pageblock migratetypes, one pcp list."""

    def __init__(self, *, node: int, name: str, start_pfn: int, spanned: int, spec: KernelSpec,
                 wmark_min: int = 0, wmark_low: int = 0, wmark_high: int = 0, boost: int = 0,
                 lowmem_reserve: tuple[int, ...] = (), nr_reserved_highatomic: int = 0,
                 pcp_high: int = 0, pcp_batch: int = 0, default_mt: int = MOVABLE):
        if name not in ZONE_NAMES:
            raise ModelError(f"unknown zone {name!r}")
        if spanned < 0 or start_pfn < 0:
            raise ModelError(f"zone {name}: bad span {start_pfn}+{spanned}")
        self.node, self.name, self.idx = node, name, ZONE_NAMES.index(name)
        self.start, self.end = start_pfn, start_pfn + spanned
        self.spec = spec
        self.nr_orders = spec.nr_orders
        self.max_order = spec.max_order
        self.pb_order = spec.pageblock_order
        # watermarks as zoneinfo prints them: min/low/high include watermark_boost
        self.wmark_min, self.wmark_low, self.wmark_high, self.boost = wmark_min, wmark_low, wmark_high, boost
        self.lowmem_reserve = tuple(lowmem_reserve) or (0,)
        self.nr_reserved_highatomic = nr_reserved_highatomic
        self.lists = [[OrderedDict() for _ in range(MIGRATE_TYPES)] for _ in range(self.nr_orders)]
        self.lists_of_mt = [[per_mt[mt] for per_mt in self.lists] for mt in range(MIGRATE_TYPES)]  # [mt][order]
        self.where: dict[int, tuple[int, int]] = {}
        self.nr_free = [0] * self.nr_orders       # free_area[order].nr_free: all migratetypes
        # unreported blocks per list: lets a reporting walk stop once it has seen them all
        # (the kernel walks on, skipping reported pages, to the same end state)
        self.unrep = [[0] * MIGRATE_TYPES for _ in range(self.nr_orders)]
        self.free_pages = 0                        # NR_FREE_PAGES: buddy pages, not isolated, not pcp
        self.pb_base = start_pfn >> self.pb_order
        n_pb = ((self.end - 1) >> self.pb_order) - self.pb_base + 1 if spanned else 0
        self.pb_mt = bytearray([default_mt]) * n_pb
        self.pcp_high, self.pcp_batch = pcp_high, pcp_batch
        self.pcp: deque = deque()                  # order-0 (pfn, npages) runs, oldest first
        self.pcp_thp: deque = deque()              # pageblock_order blocks (THPs), oldest first
        self.pcp_count = 0                         # pages on both
        self.pcp_pushes = 0                        # free_to_pcp / free_range calls: pcp may hold new pages
        self.pcp_runs = 0                          # leading runs of the last alloc_pages taken whole from pcp
        self.alloc_short = 0                       # pages the last alloc_pages could not get

    # ---- identity and small helpers
    @property
    def key(self) -> str:
        return f"{self.node}/{self.name}"

    def __repr__(self):
        return f"<Zone {self.key} [{self.start}, {self.end}) free={self.free_pages}>"

    def contains(self, pfn: int, npages: int = 1) -> bool:
        return self.start <= pfn and pfn + npages <= self.end

    def pageblock_mt(self, pfn: int) -> int:
        return self.pb_mt[(pfn >> self.pb_order) - self.pb_base]

    def set_pageblock_mt(self, pfn: int, mt: int) -> None:
        self.pb_mt[(pfn >> self.pb_order) - self.pb_base] = mt

    def is_free_head(self, pfn: int, order: int | None = None) -> bool:
        w = self.where.get(pfn)
        return w is not None and (order is None or w[0] == order)

    def is_reported(self, pfn: int) -> bool:
        w = self.where.get(pfn)
        return w is not None and self.lists[w[0]][w[1]][pfn]

    @property
    def min_raw(self) -> int:
        """_watermark[WMARK_MIN]: __isolate_free_page reads it without the boost."""
        return self.wmark_min - self.boost

    # ---- list primitives
    def _add(self, pfn: int, order: int, mt: int, tail: bool, reported: bool = False) -> None:
        # mm/page_alloc.c add_to_free_list / add_to_free_list_tail
        lst = self.lists[order][mt]
        lst[pfn] = reported
        if not tail:
            lst.move_to_end(pfn, last=False)
        self.where[pfn] = _OM[order][mt]
        self.nr_free[order] += 1
        if not reported:
            self.unrep[order][mt] += 1

    def _del(self, pfn: int, order: int, mt: int) -> None:
        # mm/page_alloc.c del_page_from_free_list: __ClearPageReported, nr_free--
        if not self.lists[order][mt].pop(pfn):
            self.unrep[order][mt] -= 1
        del self.where[pfn]
        self.nr_free[order] -= 1

    def add_free_block(self, pfn: int, order: int, mt: int, *, reported: bool = False, tail: bool = True) -> None:
        """Put a block on a list as it is, without merging (for building a known state)."""
        if not self.contains(pfn, 1 << order) or pfn & ((1 << order) - 1):
            raise ModelError(f"zone {self.key}: block {pfn}/{order} not aligned inside the zone")
        if pfn in self.where:
            raise ModelError(f"zone {self.key}: block {pfn} already free")
        self._add(pfn, order, mt, tail, reported)
        if mt != ISOLATE:
            self.free_pages += 1 << order

    # ---- freeing
    def _merge_likely(self, pfn: int, buddy_pfn: int, order: int) -> bool:
        # mm/page_alloc.c buddy_merge_likely: 6.1 `order >= MAX_ORDER - 2`,
        # 6.12 `order >= MAX_PAGE_ORDER - 1`: no tail placement at orders 9, 10.
        if order >= self.max_order - 1:
            return False
        higher = buddy_pfn & pfn
        w = self.where.get(higher ^ (1 << (order + 1)))
        return w is not None and w[0] == order + 1

    def free_block(self, pfn: int, order: int, *, to_tail: bool = False, mt: int | None = None) -> tuple[int, int]:
        """mm/page_alloc.c __free_one_page: merge with free buddies, add to a list.

        Returns the merged (pfn, order); the caller notifies page reporting with
        that order unless this is a put-back (FPI_SKIP_REPORT_NOTIFY).
        """
        where, lists, pb = self.where, self.lists, self.pb_order
        if mt is None:
            mt = self.pb_mt[(pfn >> pb) - self.pb_base]   # free_one_page: get_pfnblock_migratetype
        if mt != ISOLATE:
            self.free_pages += 1 << order                  # __mod_zone_freepage_state
        buddy_pfn = pfn ^ (1 << order)
        while order < self.max_order:
            buddy_pfn = pfn ^ (1 << order)
            w = where.get(buddy_pfn)
            if w is None or w[0] != order:
                break
            if order >= pb:
                # merge barrier between pageblocks without fallbacks (isolate, CMA, highatomic)
                bmt = self.pb_mt[(buddy_pfn >> pb) - self.pb_base]
                if mt != bmt and (not mergeable(mt) or not mergeable(bmt)):
                    break
            if not lists[order][w[1]].pop(buddy_pfn):     # del_page_from_free_list clears PageReported
                self.unrep[order][w[1]] -= 1
            del where[buddy_pfn]
            self.nr_free[order] -= 1
            pfn &= buddy_pfn
            order += 1
        # _merge_likely and _add, inlined: the hottest lines of a long trace
        if to_tail:
            tail = True
        elif order >= self.max_order - 1:
            tail = False
        else:
            w = where.get((buddy_pfn & pfn) ^ (1 << (order + 1)))
            tail = w is not None and w[0] == order + 1
        lst = lists[order][mt]
        lst[pfn] = False
        if not tail:
            lst.move_to_end(pfn, last=False)
        where[pfn] = _OM[order][mt]
        self.nr_free[order] += 1
        self.unrep[order][mt] += 1
        return pfn, order

    def free_range(self, pfn: int, npages: int, *, via_pcp: bool = True) -> int:
        """Free order-0 pages [pfn, pfn+npages); returns the largest order that reached a list (-1: none).

        Order-0 frees go through the per-cpu list (mm/page_alloc.c
        free_unref_page_commit): they reach the buddy lists only when the list
        passes `high`, `batch` oldest pages at a time (free_pcppages_bulk takes
        list_last_entry). The batch doubling of nr_pcp_free is left out.
        """
        if pfn < self.start or pfn + npages > self.end:
            raise ModelError(f"zone {self.key}: range {pfn}+{npages} outside the zone")
        if not via_pcp or self.pcp_high <= 0:
            return self._free_run(pfn, npages)
        self.pcp.append((pfn, npages))
        self.pcp_count += npages
        self.pcp_pushes += 1
        if self.pcp_count < self.pcp_high:
            return -1
        return self._drain_over_high()

    def free_to_pcp(self, runs: list, i: int = 0) -> tuple[int, int]:
        """free_unref_page_commit for runs[i], runs[i + 1], ... while they lie in this zone.

        A THP goes on as one pageblock_order entry (pcp_allowed_order); any other run as one
        entry, merged into the newest if it starts where that one ends (same pages, same
        order); the list drains past `high`. Returns the largest order that reached a buddy
        list (-1: none) and the index of the first run not taken. One call per free, not per
        run: the loop keeps the zone's fields in locals."""
        start, end, high = self.start, self.end, self.pcp_high
        pcp, thps = self.pcp, self.pcp_thp
        self.pcp_pushes += 1
        thp = 1 << self.pb_order
        best = -1
        count = self.pcp_count
        tail = pcp[-1][0] + pcp[-1][1] if pcp else -1      # where the newest entry ends
        for i in range(i, len(runs)):
            run = runs[i]
            pfn, n = run
            if n <= 0 or pfn < start or pfn + n > end:
                self.pcp_count = count
                return best, i
            if n == thp and not pfn & (thp - 1):
                thps.append(pfn)
            elif pfn == tail:
                pcp[-1] = (pcp[-1][0], pcp[-1][1] + n)
                tail += n
            else:
                pcp.append(run)                    # the run's own tuple: no new object per run
                tail = pfn + n
            count += n
            if count >= high:
                self.pcp_count = count
                o = self._drain_over_high()
                if o > best:
                    best = o
                count = self.pcp_count
                tail = pcp[-1][0] + pcp[-1][1] if pcp else -1
        self.pcp_count = count
        return best, len(runs)

    def _drain_over_high(self) -> int:
        # nr_pcp_free: clamp(batch, batch, high - batch), 1 when high < batch; the doubling
        # by free_factor over consecutive frees is left out
        b, h = max(1, self.pcp_batch), self.pcp_high
        per = 1 if h < b else max(1, min(b, h - b))
        # each drain takes `per` pages, and drains happen while count >= high
        n_drain = ((self.pcp_count - h) // per + 1) * per
        return self._drain_pcp(n_drain)

    def _drain_pcp(self, n: int) -> int:
        # free_pcppages_bulk: oldest first (list_last_entry); an order-pageblock_order entry
        # (a THP, pcp_allowed_order) goes back whole, even past the count asked for. The
        # kernel alternates between per-order lists; here order 0 drains before THPs.
        best = -1
        pcp, thp = self.pcp, self.pcp_thp
        while n > 0 and (pcp or thp):
            if pcp:
                p, k = pcp.popleft()
                if k > n:
                    pcp.appendleft((p + n, k - n))
                    k = n
                o = self.free_block(p, 0)[1] if k == 1 else self._free_run(p, k)
            else:
                p = thp.popleft()
                k = 1 << self.pb_order
                o = self.free_block(p, self.pb_order)[1]
            self.pcp_count -= k
            if o > best:
                best = o
            n -= k
        return best

    def drain_pcp(self) -> int:
        """drain_pages_zone: everything on the per-cpu list back to the buddy lists."""
        return self._drain_pcp(self.pcp_count)

    def _free_run(self, pfn: int, npages: int) -> int:
        # aligned_blocks + free_block, without the generator: drains call this ~100k times
        best, end, top = -1, pfn + npages, self.max_order
        while pfn < end:
            o = (pfn & -pfn).bit_length() - 1 if pfn else top
            if o > top:
                o = top
            while (1 << o) > end - pfn:
                o -= 1
            fo = self.free_block(pfn, o)[1]
            if fo > best:
                best = fo
            pfn += 1 << o
        return best

    # ---- allocation
    def rmqueue_smallest(self, order: int, mt: int) -> int | None:
        # mm/page_alloc.c __rmqueue_smallest: head of the smallest non-empty list
        lists = self.lists
        for o in range(order, self.nr_orders):
            lst = lists[o][mt]
            if lst:
                pfn = next(iter(lst))
                self._del(pfn, o, mt)
                self._expand(pfn, order, o, mt)
                return pfn
        return None

    def _expand(self, pfn: int, low: int, high: int, mt: int) -> None:
        # mm/page_alloc.c expand: upper halves back at the list heads, unreported, no notify
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            self._add(pfn + size, high, mt, False)

    def _steal_fallback(self, order: int, start_mt: int) -> bool:
        # mm/page_alloc.c __rmqueue_fallback, simplified: largest fallback block
        # first; pageblocks change type only for blocks >= pageblock_order
        # (steal_suitable_fallback -> change_pageblock_range).
        fbs = FALLBACKS.get(start_mt, ())
        for o in range(self.max_order, order - 1, -1):
            for fmt in fbs:
                lst = self.lists[o][fmt]
                if not lst:
                    continue
                can_steal = o >= self.pb_order // 2 or start_mt in (UNMOVABLE, RECLAIMABLE)
                if not can_steal and start_mt == MOVABLE and o > order:
                    return self._steal_smallest(order, start_mt)
                self._move_block(next(iter(lst)), o, fmt, start_mt)
                return True
        return False

    def _steal_smallest(self, order: int, start_mt: int) -> bool:
        for o in range(order, self.nr_orders):
            for fmt in FALLBACKS.get(start_mt, ()):
                lst = self.lists[o][fmt]
                if lst:
                    self._move_block(next(iter(lst)), o, fmt, start_mt)
                    return True
        return False

    def _move_block(self, pfn: int, order: int, from_mt: int, to_mt: int) -> None:
        reported = self.lists[order][from_mt][pfn]
        self._del(pfn, order, from_mt)
        if order >= self.pb_order:
            for p in range(pfn, pfn + (1 << order), 1 << self.pb_order):
                self.set_pageblock_mt(p, to_mt)
        self._add(pfn, order, to_mt, True, reported)   # move_to_free_list: list_move_tail

    def rmqueue(self, order: int, mt: int) -> int | None:
        """__rmqueue: smallest first, then steal from a fallback type and retry."""
        pfn = self.rmqueue_smallest(order, mt)
        while pfn is None and self._steal_fallback(order, mt):
            pfn = self.rmqueue_smallest(order, mt)
        if pfn is not None:
            self.free_pages -= 1 << order
        return pfn

    def alloc_pages(self, npages: int, mt: int = MOVABLE) -> list[tuple[int, int]]:
        """npages order-0 allocations in a row, as (pfn, n) runs.

        Same end state as npages calls of __rmqueue(order 0): the per-cpu list
        gives back its most recently freed pages first; then, since the
        smallest block is always split and its remainders are always the next
        smallest, a block of 2^k pages is used up lowest page first before any
        other block is touched. Stops early (short result) when the zone runs dry.
        """
        out: list = []
        need = npages
        self.alloc_short = 0
        pcp = self.pcp
        start = -1                                 # where the last run taken starts
        while need and pcp:                        # rmqueue_pcplist: order-0 list, most recent first
            run = pcp.pop()
            p, k = run
            if k > need:
                pcp.append((p, k - need))
                p, k = p + k - need, need
                run = (p, k)
            if p + k == start:                     # LIFO hands a freed run back top-down: rejoin it
                out[-1] = (p, k + out[-1][1])
            else:
                out.append(run)                    # the pcp's tuple itself: no new object per run
            start = p
            need -= k
        self.pcp_count -= npages - need
        self.pcp_runs = len(out)
        if not need:
            return out
        last_pcp = out[-1] if out else None
        where, nr_free, unrep = self.where, self.nr_free, self.unrep
        by_order, om = self.lists_of_mt[mt], _OM
        end = last_pcp[0] + last_pcp[1] if out else -1      # where the last run ends
        taken = o = 0
        while need:
            # _take_smallest_block, inlined. Only the last block taken is split, so lists below
            # the one used last stay empty: the search goes on from there.
            for o in range(o, self.nr_orders):
                lst = by_order[o]
                if lst:
                    break
            else:
                if not self._steal_fallback(0, mt):   # moves a block of another type to this list
                    self.alloc_short = need
                    break
                o = 0
                continue
            size = 1 << o
            while lst and need:                    # this list stays the smallest while it lasts
                pfn, rep = lst.popitem(last=False)
                del where[pfn]
                nr_free[o] -= 1
                if not rep:
                    unrep[o][mt] -= 1
                take = size if size <= need else need
                if pfn == end:
                    out[-1] = (out[-1][0], out[-1][1] + take)
                else:
                    out.append((pfn, take))
                end = pfn + take
                taken += take
                need -= take
                if take < size:
                    # the rest of the block stays free as expand() would leave it, at the list
                    # heads (_add): pieces aligned to their lowest set bit, low to high
                    p, stop = end, pfn + size
                    while p < stop:
                        ro = (p & -p).bit_length() - 1
                        rl = by_order[ro]
                        rl[p] = False
                        rl.move_to_end(p, last=False)
                        where[p] = om[ro][mt]
                        nr_free[ro] += 1
                        unrep[ro][mt] += 1
                        p += 1 << ro
        self.free_pages -= taken
        if last_pcp is not None and out[self.pcp_runs - 1] is not last_pcp:
            self.pcp_runs -= 1                     # a buddy block joined the last pcp run
        return out

    def _take_smallest_block(self, mt: int):
        lists = self.lists
        while True:
            for o in range(self.nr_orders):
                lst = lists[o][mt]
                if lst:
                    pfn = next(iter(lst))
                    self._del(pfn, o, mt)
                    return pfn, o
            if not self._steal_fallback(0, mt):
                return None

    def alloc_block(self, order: int, mt: int = MOVABLE) -> int | None:
        """One allocation of 2^order pages (a THP is order pageblock_order, served by the pcp first)."""
        if order == self.pb_order and self.pcp_thp and mt == MOVABLE:
            self.pcp_count -= 1 << order
            return self.pcp_thp.pop()
        return self.rmqueue(order, mt)

    # ---- watermarks
    def watermark_ok(self, mark: int, order: int = 0, highest_zoneidx: int = 0, free_pages: int | None = None) -> bool:
        """mm/page_alloc.c __zone_watermark_ok with ALLOC_CMA, no ALLOC_HIGH/HARDER.

        Highatomic reserves are unusable (__zone_watermark_unusable_free); the
        lowmem reserve of highest_zoneidx is added to the mark. For order > 0 a
        block of at least that order must sit on a mergeable or CMA list.
        """
        free = self.free_pages if free_pages is None else free_pages
        free -= (1 << order) - 1 + self.nr_reserved_highatomic
        reserve = self.lowmem_reserve[highest_zoneidx] if highest_zoneidx < len(self.lowmem_reserve) else 0
        if free <= mark + reserve:
            return False
        if order == 0:
            return True
        for o in range(order, self.nr_orders):
            if not self.nr_free[o]:
                continue
            for mt in (UNMOVABLE, MOVABLE, RECLAIMABLE, CMA):
                if self.lists[o][mt]:
                    return True
        return False

    # ---- page reporting hooks (mm/page_alloc.c)
    def isolate(self, pfn: int, order: int) -> bool:
        """__isolate_free_page: take a free block off its list for reporting.

        Refuses when the zone would drop below WMARK_MIN + 2^order (order-0
        check, ALLOC_CMA). Blocks of pageblock_order - 1 and up turn their
        pageblocks MOVABLE unless isolate/CMA/highatomic.
        """
        order_, lmt = self.where[pfn]
        assert order_ == order
        mt = self.pageblock_mt(pfn)
        if mt != ISOLATE:
            if not self.watermark_ok(self.min_raw + (1 << order)):
                return False
            self.free_pages -= 1 << order
        self._del(pfn, order, lmt)
        if order >= self.pb_order - 1:
            step = 1 << self.pb_order
            for p in range(pfn, pfn + max(1 << order, 1), step):
                if self.pageblock_mt(p) in (UNMOVABLE, MOVABLE, RECLAIMABLE):
                    self.set_pageblock_mt(p, MOVABLE)
        return True

    def putback(self, pfn: int, order: int, reported: bool) -> bool:
        """page_reporting_drain -> __putback_isolated_page: __free_one_page with
        FPI_TO_TAIL | FPI_SKIP_REPORT_NOTIFY into the list of the pageblock's
        type; PageReported is set only if the block did not merge."""
        mt = self.pageblock_mt(pfn)
        hp, ho = self.free_block(pfn, order, to_tail=True, mt=mt)
        if reported and hp == pfn and ho == order:
            self.lists[order][mt][pfn] = True
            self.unrep[order][mt] -= 1
            return True
        return False

    # ---- inspection
    def counts(self) -> list[list[int]]:
        """[order][mt] -> number of free blocks (what pagetypeinfo prints)."""
        return [[len(self.lists[o][m]) for m in range(MIGRATE_TYPES)] for o in range(self.nr_orders)]

    def reported_pages(self, min_order: int = 0) -> int:
        n = 0
        for o in range(min_order, self.nr_orders):
            for m in range(MIGRATE_TYPES):
                n += sum(1 for r in self.lists[o][m].values() if r) << o
        return n

    def free_blocks(self):
        """(pfn, order, mt, reported) for every free block, in no particular order."""
        for pfn, (o, m) in self.where.items():
            yield pfn, o, m, self.lists[o][m][pfn]


class Machine:
    """All zones of a guest, in for_each_zone order (node by node, DMA first)."""

    def __init__(self, zones: list[Zone], spec: KernelSpec):
        self.spec = spec
        self.zones = sorted(zones, key=lambda z: (z.node, z.idx))
        spans = sorted((z.start, z.end, z) for z in self.zones if z.end > z.start)
        for (s0, e0, a), (s1, e1, b) in zip(spans, spans[1:]):
            if s1 < e0:
                raise ModelError(f"zones {a.key} and {b.key} overlap")
        self._starts = [s for s, _, _ in spans]
        self._spans = spans
        self._zonelists: dict = {}
        self._last = self.zones[0] if self.zones else None
        self.pcp_runs = 0          # leading runs of the last alloc_pages taken whole from a pcp list

    def zone_of(self, pfn: int) -> Zone:
        i = bisect_right(self._starts, pfn) - 1
        if i >= 0:
            s, e, z = self._spans[i]
            if pfn < e:
                return z
        raise ModelError(f"pfn {pfn} is in no zone")

    def zone(self, key: str) -> Zone:
        for z in self.zones:
            if z.key == key:
                return z
        raise KeyError(key)

    @property
    def end_pfn(self) -> int:
        return max((z.end for z in self.zones), default=0)

    def zonelist(self, node: int = 0, highest: str = "Normal") -> list[Zone]:
        """build_zonelists: the local node's zones from `highest` down, then other nodes'."""
        key = (node, highest)
        zl = self._zonelists.get(key)
        if zl is None:
            zl = self._zonelists[key] = self._build_zonelist(node, highest)
        return zl

    def _build_zonelist(self, node: int, highest: str) -> list[Zone]:
        top = ZONE_NAMES.index(highest)
        local = [z for z in self.zones if z.node == node and z.idx <= top]
        other = [z for z in self.zones if z.node != node and z.idx <= top]
        key = lambda z: -z.idx
        return sorted(local, key=key) + sorted(other, key=lambda z: (z.node, -z.idx))

    def alloc_pages(self, npages: int, mt: int = MOVABLE, node: int = 0, highest: str = "Normal") -> list[tuple[int, int]]:
        """Allocate npages order-0 pages, zone by zone down the zonelist.

        get_page_from_freelist takes a zone while it stays above its low
        watermark plus the lowmem reserve for the requested zone; then min;
        no reclaim is modelled, so running out raises ModelError.
        """
        zl = self._zonelists.get((node, highest)) or self.zonelist(node, highest)
        classzone = _ZONE_IDX[highest]
        z = zl[0] if zl else None
        if z is not None:                          # fast path: the first zone has room above low
            reserve = z.lowmem_reserve[classzone] if classzone < len(z.lowmem_reserve) else 0
            if z.free_pages + z.pcp_count - z.nr_reserved_highatomic - z.wmark_low - reserve - 1 >= npages:
                out = z.alloc_pages(npages, mt)
                if not z.alloc_short:
                    self.pcp_runs = z.pcp_runs
                    return out
                self.free_runs(out)
        self.pcp_runs = 0
        out: list[tuple[int, int]] = []
        need = npages
        for use_min in (False, True):
            for z in zl:
                reserve = z.lowmem_reserve[classzone] if classzone < len(z.lowmem_reserve) else 0
                mark = z.wmark_min if use_min else z.wmark_low
                room = z.free_pages + z.pcp_count - z.nr_reserved_highatomic - mark - reserve - 1
                if room <= 0:
                    continue
                want = need if need < room else room
                got = z.alloc_pages(want, mt)
                out += got
                need -= want - z.alloc_short
                if not need:
                    return out
        if need:
            self.free_runs(out)
            raise ModelError(f"model guest out of memory: {npages} pages requested, {need} short")
        return out

    def alloc_thp(self, count: int, node: int = 0) -> list[tuple[int, int]]:
        """`count` order-pageblock_order movable allocations (anonymous THPs)."""
        order = self.spec.pageblock_order
        out = []
        for _ in range(count):
            for z in self.zonelist(node):
                if not z.watermark_ok(z.wmark_low, order):
                    continue
                pfn = z.alloc_block(order, MOVABLE)
                if pfn is not None:
                    out.append((pfn, 1 << order))
                    break
            else:
                self.free_runs(out, via_pcp=False)
                raise ModelError("model guest out of memory for a THP")
        return out

    def free_runs(self, runs, via_pcp: bool = True) -> int:
        """Free (pfn, n) runs of order-0 pages; returns the largest order that reached a buddy list.

        The hot path of long traces (millions of runs of a few pages): consecutive runs inside
        one zone with a per-cpu list go to Zone.free_to_pcp in one call; a run across zones,
        or to a zone without one, is split and freed here (Zone.free_range, inlined)."""
        best = -1
        z = self._last
        if not isinstance(runs, list):
            runs = list(runs)
        i, n_runs = 0, len(runs)
        while i < n_runs:
            pfn, n = runs[i]
            if not (z.start <= pfn < z.end):
                z = self.zone_of(pfn)
            if via_pcp and z.pcp_high > 0 and 0 < n <= z.end - pfn:
                o, i = z.free_to_pcp(runs, i)
                if o > best:
                    best = o
                continue
            i += 1
            while n:
                if not (z.start <= pfn < z.end):
                    z = self.zone_of(pfn)
                k = z.end - pfn
                if k > n:
                    k = n
                if via_pcp and z.pcp_high > 0:
                    o = z.free_to_pcp([(pfn, k)])[0]
                elif k == 1:
                    o = z.free_block(pfn, 0)[1]
                else:
                    o = z._free_run(pfn, k)
                if o > best:
                    best = o
                pfn += k
                n -= k
        self._last = z
        return best

    def free_pages(self) -> int:
        return sum(z.free_pages for z in self.zones)
