"""Build a model guest from a Snapshot: free block counts -> blocks at made-up positions.

/proc gives how many free blocks each (zone, order, migratetype) list holds,
not where they are. Positions matter to the model only for buddy merges, so
blocks are laid out where no two free blocks are buddies, exactly as in any
real buddy state (free buddies would have merged):

* a block of the top order takes a fresh aligned 4 MiB chunk;
* a smaller block of order o goes into a "slot": an aligned region whose buddy
  holds an allocated page. Putting it in a slot of order j > o leaves new
  slots: orders o+1..j-1 after it, and orders 0..o-1 inside its own buddy,
  whose first page is kept allocated.
Zone head and tail that are not 4 MiB aligned are cut into slots too (their
buddies lie outside the zone). Fresh chunks are per migratetype so a free
block's pageblock has the block's type (putback files a block by pageblock).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..snapshot import Snapshot, ZoneInfo
from .buddy import HIGHATOMIC, MIGRATE_TYPES, MOVABLE, RECLAIMABLE, UNMOVABLE, Machine, Zone
from .errors import ModelError
from .kernel import KernelSpec


@dataclass(frozen=True)
class PlacedBlock:
    zone: str
    pfn: int
    order: int
    mt: int
    reported: bool
    settled: bool = False   # free before the workload's free (counted in `before` too)


class _Packer:
    def __init__(self, zone: Zone):
        self.z = zone
        self.top = zone.max_order
        chunk = 1 << self.top
        self.cursor = -(-zone.start // chunk) * chunk
        self.chunk_end = zone.end // chunk * chunk
        # slot pools: per migratetype, plus unclaimed (zone head/tail)
        self.pools = {m: [[] for _ in range(self.top + 1)] for m in range(MIGRATE_TYPES)}
        self.shared = [[] for _ in range(self.top + 1)]
        self.claimed: dict[int, int] = {}      # pageblock index -> migratetype
        if self.cursor >= self.chunk_end:      # zone smaller than one chunk
            self.cursor = self.chunk_end = zone.end
        self._edge_slots(zone.start, min(self.cursor, zone.end))
        self._edge_slots(max(self.chunk_end, self.cursor), zone.end)

    def _edge_slots(self, s: int, e: int) -> None:
        while s < e:
            o = (s & -s).bit_length() - 1 if s else self.top
            o = min(o, self.top - 1)
            while (1 << o) > e - s:
                o -= 1
            self.shared[o].append(s)
            s += 1 << o

    def _pb(self, pfn: int) -> int:
        return pfn >> self.z.pb_order

    def _claim(self, pfn: int, order: int, mt: int) -> None:
        step = 1 << self.z.pb_order
        for p in range(pfn, pfn + (1 << order), step) if order >= self.z.pb_order else (pfn,):
            self.claimed.setdefault(self._pb(p), mt)
            self.z.set_pageblock_mt(p, self.claimed[self._pb(p)])

    def _fresh(self, mt: int) -> int:
        if self.cursor + (1 << self.top) > self.chunk_end:
            raise ModelError(f"zone {self.z.key}: free blocks do not fit in the zone's span")
        pfn = self.cursor
        self.cursor += 1 << self.top
        self._claim(pfn, self.top, mt)
        return pfn

    def _slot(self, order: int, mt: int) -> tuple[int, int]:
        for j in range(order, self.top):
            pool = self.pools[mt][j]
            if pool:
                return pool.pop(), j
            sh = self.shared[j]
            while sh:
                s = sh.pop()
                owner = self.claimed.get(self._pb(s))
                if owner is None or owner == mt or j >= self.z.pb_order:
                    return s, j
                self.pools[owner][j].append(s)
        return self._fresh(mt), self.top

    def place(self, order: int, mt: int) -> int:
        if order == self.top:
            return self._fresh(mt)
        s, j = self._slot(order, mt)
        self._claim(s, order, mt)
        pool = self.pools[mt]
        if j > order:
            for k in range(order):
                pool[k].append(s + (1 << order) + (1 << k))
            for k in range(order + 1, j):
                pool[k].append(s + (1 << k))
        return s

    def finish_pageblocks(self, wanted: dict[int, int]) -> None:
        """Give unclaimed (allocated) pageblocks types so the zone's counts come near pagetypeinfo's."""
        have = {m: 0 for m in range(MIGRATE_TYPES)}
        for m in self.claimed.values():
            have[m] += 1
        need = [(m, max(0, wanted.get(m, 0) - have[m])) for m in (UNMOVABLE, RECLAIMABLE)]
        z = self.z
        for i in range(len(z.pb_mt)):
            if (z.pb_base + i) in self.claimed:
                continue
            mt = MOVABLE
            for k, (m, left) in enumerate(need):
                if left:
                    mt, need[k] = m, (m, left - 1)
                    break
            z.pb_mt[i] = mt


def zone_from_info(zi: ZoneInfo, spec: KernelSpec, pcp: bool = False) -> Zone:
    if zi.start_pfn is None:
        raise ModelError(f"zone {zi.node}/{zi.zone}: zoneinfo has no start_pfn")
    high = max((p.high for p in zi.pagesets), default=0) if pcp else 0
    batch = max((p.batch for p in zi.pagesets), default=0) if pcp else 0
    return Zone(node=zi.node, name=zi.zone, start_pfn=zi.start_pfn, spanned=zi.spanned, spec=spec,
                wmark_min=zi.min, wmark_low=zi.low, wmark_high=zi.high, boost=zi.boost,
                lowmem_reserve=zi.protection, nr_reserved_highatomic=zi.reserved_highatomic,
                pcp_high=high, pcp_batch=batch)


def build_machine(snap: Snapshot, spec: KernelSpec, reported: dict | None = None,
                  pcp: bool = False, mark_reported: bool = True) -> tuple[Machine, list[PlacedBlock]]:
    """A Machine whose free lists hold the snapshot's counts.

    reported: {(node, zone): {mt: [count per order]}} blocks that were already
    free before (PlacedBlock.settled); with mark_reported they are flagged
    PageReported and put at the list tail, the rest at the head, as the
    kernel leaves them (reported blocks are put back with FPI_TO_TAIL).
    NR_FREE_PAGES is set from the laid-out blocks, so pcp pages are outside.
    """
    zones, placed = [], []
    for zi in snap.populated_zones():
        z = zone_from_info(zi, spec, pcp)
        counts = snap.free_counts(zi.node, zi.zone)
        if not counts:
            zones.append(z)
            continue
        rep = (reported or {}).get(zi.key, {})
        pk = _Packer(z)
        blocks = []
        for order in range(spec.max_order, -1, -1):
            for mt in sorted(counts):
                if order >= len(counts[mt]):
                    raise ModelError(f"zone {z.key}: {len(counts[mt])} orders in the snapshot, model has "
                                     f"{spec.nr_orders}")
                n = counts[mt][order]
                n_rep = min(n, rep.get(mt, [0] * spec.nr_orders)[order]) if rep else 0
                for i in range(n):
                    pfn = pk.place(order, mt)
                    blocks.append((pfn, order, mt, i >= n - n_rep))
        # unreported first at the head, in placing order; reported behind them
        for pfn, order, mt, r in blocks:
            if not (r and mark_reported):
                z.add_free_block(pfn, order, mt, reported=False, tail=True)
        for pfn, order, mt, r in blocks:
            if r and mark_reported:
                z.add_free_block(pfn, order, mt, reported=True, tail=True)
        wanted = {}
        names = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")
        for name, c in snap.pagetypes.blocks.get(zi.key, {}).items():
            wanted[names.index(name)] = c
        pk.finish_pageblocks(wanted)
        placed += [PlacedBlock(z.key, p, o, m, r and mark_reported, r) for p, o, m, r in blocks]
        zones.append(z)
    if not zones:
        raise ModelError("snapshot has no populated zone")
    return Machine(zones, spec), placed


def _block_fields(b) -> tuple[int, int, bool]:
    if isinstance(b, tuple):
        pfn, order, reported = b[:3]
    else:
        pfn = getattr(b, "head", None)
        pfn = b.pfn if pfn is None else pfn
        order, reported = b.order, b.reported
    return int(pfn), int(order), bool(reported)


def build_machine_from_blocks(snap: Snapshot, spec: KernelSpec, blocks) -> tuple[Machine, list[PlacedBlock]]:
    """A Machine from the guest's real free blocks: (pfn, order, reported) tuples, or objects with
    head/pfn, order and reported (harness.perblock.Block), e.g. from /proc/kpageflags.

    kpageflags has no migratetype; each zone's per-order counts from pagetypeinfo are handed
    out by pfn, Unmovable, Reclaimable and HighAtomic first (they sit low), the rest Movable.
    Only how many blocks share a list matters to reporting (each list has its own budget).
    Unreported blocks lead their list, highest pfn first (a linear free puts the last, highest
    block at the head); reported ones follow, as put-back with FPI_TO_TAIL leaves them.
    """
    zones = {}
    for zi in snap.populated_zones():
        zones[zi.key] = zone_from_info(zi, spec)
    machine = Machine(list(zones.values()), spec)
    per_zone: dict = {}
    for b in blocks:
        pfn, order, reported = _block_fields(b)
        z = machine.zone_of(pfn)
        if not 0 <= order <= spec.max_order:
            raise ModelError(f"block {pfn}/{order}: order outside 0..{spec.max_order}")
        per_zone.setdefault((z.node, z.name), []).append((pfn, order, reported))
    placed = []
    for key, bl in per_zone.items():
        z = zones[key]
        counts = snap.free_counts(*key)
        bl.sort()
        typed = []
        for order in range(spec.nr_orders):
            of_order = [b for b in bl if b[1] == order]
            quota = [(mt, counts.get(mt, (0,) * spec.nr_orders)[order]) for mt in (UNMOVABLE, RECLAIMABLE, HIGHATOMIC)]
            i = 0
            for pfn, o, rep in of_order:
                mt = MOVABLE
                while i < len(quota) and quota[i][1] == 0:
                    i += 1
                if i < len(quota):
                    mt = quota[i][0]
                    quota[i] = (mt, quota[i][1] - 1)
                typed.append((pfn, o, mt, rep))
        for pfn, o, mt, rep in typed:
            step = 1 << z.pb_order
            for p in range(pfn, pfn + (1 << o), step) if o >= z.pb_order else (pfn,):
                z.set_pageblock_mt(p, mt)
        for pfn, o, mt, rep in sorted((t for t in typed if not t[3]), reverse=True):
            z.add_free_block(pfn, o, mt, reported=False, tail=True)
        for pfn, o, mt, rep in typed:
            if rep:
                z.add_free_block(pfn, o, mt, reported=True, tail=True)
        placed += [PlacedBlock(z.key, p, o, m, r, r) for p, o, m, r in typed]
    return machine, placed
