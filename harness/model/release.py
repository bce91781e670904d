"""The reference allocator runs a release: from the guest's state before it, the free blocks after it.

Pure, self-contained input types (no parser imports): what a phase read before the release,
each input stamped with when it was read (seconds relative to the release, all <= 0).

The free path, as the guest's kernel runs it (Linux 6.1.176 / 6.12.95 mm/page_alloc.c):
- munmap frees the region's pages in virtual-address order on the CPU the workload runs on
  (zap_pte_range -> release_pages -> free_unref_page_list): order-0 pages and whole THPs
  (pcp_allowed_order: order <= PAGE_ALLOC_COSTLY_ORDER or pageblock_order) go onto that
  CPU's per-cpu lists (free_unref_page_commit, list_add: newest at the head).
- when the list's count reaches `high`, free_pcppages_bulk frees nr_pcp_free pages, from the
  list the page went to first (oldest first: list_last_entry), then the others round robin,
  merging each with its free buddies (__free_one_page).
  6.1 nr_pcp_free: batch << free_factor, free_factor++ while below high - batch and below
  CONFIG_PCP_BATCH_SCALE_MAX (5), clamped to [batch, high - batch]; free_factor is halved by
  each allocation (rmqueue_pcplist), so after the workload's touch it starts at 0.
  6.12 nr_pcp_free: free_count (pages freed in a row: a folio's pages added while it is under
  batch << 5, so a THP takes it past; the unmap's deposited tables start it, gather_free_count)
  clamped to [batch, high - batch]; nr_pcp_high lifts high to free_count + batch when count >= high,
  within [high_min, high_max], and vmstat's decay_pcp_high lowers it again by 1/8 per second
  towards high_min, freeing what is over it (the residue drains after the release).
- a THP partly unmapped stays allocated (deferred split, freed only when a shrinker splits it);
  one whose every mapped page is unmapped is freed whole, as one pageblock_order block.
What this leaves on the per-cpu lists (the newest pages freed) is the predicted residue.
"""
from __future__ import annotations

import bisect
import copy
import dataclasses
import itertools
from dataclasses import dataclass, field

from harness.model.buddy import MOVABLE, UNMOVABLE, Machine, Zone
from harness.model.errors import ModelError
from harness.model.kernel import KernelSpec, kernel_spec

PCP_BATCH_SCALE_MAX = 5          # Debian's CONFIG_PCP_BATCH_SCALE_MAX (mm/Kconfig default), 6.1 and 6.12
MIGRATE_PCPTYPES = 3             # MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE (include/linux/mmzone.h)
PAGE_ALLOC_COSTLY_ORDER = 3


def pindex_order(pindex: int, nlists: int) -> tuple[int, int | None]:
    """Pure: (order, migratetype) of per-cpu list `pindex` (mm/page_alloc.c order_to_pindex):
    orders 0..PAGE_ALLOC_COSTLY_ORDER, MIGRATE_PCPTYPES lists each, then the THP lists
    (HPAGE_PMD_ORDER, 9 on x86): one for every migratetype where there are 13 lists (None),
    else one for all but movable and one for movable (0, 1). Both kernels the suite boots
    have 14 (their BTF)."""
    low = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
    if pindex < low:
        return pindex // MIGRATE_PCPTYPES, pindex % MIGRATE_PCPTYPES
    if nlists - low == 1:
        return 9, None
    return 9, pindex - low


def pages_on_lists(lists) -> int:
    """Pure: the pages on a CPU's lists of one zone, each list by its order (list index)."""
    return sum(len(li) << pindex_order(i, len(lists))[0] for i, li in enumerate(lists))


def next_list(p: int, nlists: int, listed) -> int | None:
    """Pure: free_pcppages_bulk's round robin, the next list index after p (wrapping) whose
    list is not empty (listed(index)); None: all are."""
    for _ in range(nlists):
        p = (p + 1) % nlists
        if listed(p):
            return p
    return None


@dataclass(frozen=True)
class Pcp:
    """One CPU's per-cpu pageset of a zone, as /proc/zoneinfo prints it."""
    cpu: int
    count: int
    high: int
    batch: int


@dataclass(frozen=True)
class ZoneState:
    node: int
    name: str
    start: int
    end: int
    wmark_min: int
    wmark_low: int
    wmark_high: int
    boost: int = 0
    lowmem_reserve: tuple[int, ...] = ()
    highatomic: int = 0
    pcps: tuple[Pcp, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.node}/{self.name}"

    @property
    def label(self) -> str:
        """The per-block captures' zone name: 'DMA32' on node 0, 'Normal@node1' elsewhere."""
        return self.name if self.node == 0 else f"{self.name}@node{self.node}"

    def pcp(self, cpu: int) -> Pcp | None:
        return next((p for p in self.pcps if p.cpu == cpu), None)

    def high_min(self, nodes: int) -> int:
        """6.12's pcp->high_min, the same on every CPU: mm/page_alloc.c zone_highsize (no
        percpu_pagelist_high_fraction) splits the zone's low watermark (its boost aside) over
        the CPUs of its node, at least 4 batches. zoneinfo prints only each CPU's current high,
        which an idle CPU's decay brings down to high_min and a busy one's frees raise: a
        restored run read 8671 on both CPUs where the kernel's was 6928 (kprobe). On several
        nodes (CPUs per node not recorded) the lowest high read, an upper bound."""
        read = min((q.high for q in self.pcps), default=0)
        if nodes != 1 or not self.pcps:
            return read
        batch = max(q.batch for q in self.pcps)
        return min(read, max((self.wmark_low - self.boost) // len(self.pcps), batch << 2))


@dataclass(frozen=True)
class PcpContents:
    """One CPU's per-cpu lists of one zone as the capture walked them (e2epfn --pcp): per list
    index (pindex_order), the pages' pfns, oldest first (the tail, which a flush takes first)."""
    zone: str                               # ZoneState.key
    cpu: int
    lists: tuple[tuple[int, ...], ...]

    def pages(self) -> int:
        return pages_on_lists(self.lists)


@dataclass(frozen=True)
class FreeBlock:
    pfn: int
    order: int
    reported: bool
    mt: int = MOVABLE


@dataclass(frozen=True)
class Run:
    """Guest pages [pfn, pfn + pages) in the order the release frees them; huge: part of a THP."""
    pfn: int
    pages: int
    huge: bool = False


@dataclass(frozen=True)
class PreRelease:
    """Everything the model may know, all read before the release."""
    kernel: str
    order: int                              # effective page_reporting_order
    zones: tuple[ZoneState, ...]
    blocks: tuple[FreeBlock, ...]           # the guest's free blocks (kpageflags), reported or not
    held: bytes                             # held[pfn]: the host holds the page (QEMU's pagemap)
    mapped: tuple[Run, ...]                 # the workload's mapped pages (its own pagemap)
    unmapped: tuple[Run, ...]               # of those, what the release unmaps, in its order
    kept: tuple[Run, ...] = ()              # other pages known to stay allocated (the workload's)
    cpu: int | None = None                  # the CPU the release runs on (the workload is pinned)
    # the workload took its CPU's order-0 movable pcp pages just before (an allocation takes
    # them newest first): what is left there is at most one refill batch, the rest of the
    # count sits on other lists
    pcp_taken: bool = False
    # what frees the pages: "munmap" (the workload's region, in VA order) or "drop_caches"
    # (clean page cache, taken in pfn order: page index order is not in /proc)
    kind: str = "munmap"
    read_at_s: dict = field(default_factory=dict)   # input name -> seconds relative to the release
    # right after the unmap the workload faults in this many new pages on its CPU (e2emem
    # SETTLE_FAULTS): each takes the newest order-0 movable pcp page and halves free_factor
    faults_after: int = 0
    ours_cpu: int | None = None             # the CPU our SSH commands and the interrupts run on
    # heads of the aligned THP-sized blocks whose every page had no kpageflags flag: a THP on a
    # per-cpu list looks so (None: the capture did not tell them apart)
    flagless_thps: tuple[int, ...] | None = None
    # every run of flagless pages (first pfn, pages): a page on a per-cpu list is one (None: the
    # capture did not tell them apart)
    flagless: tuple[tuple[int, int], ...] | None = None
    # the PTE tables the unmap frees after its pages (free_pgtables, into its last gather batch):
    # order-0 pages of unknown position
    page_tables: int = 0
    # every run of page-table pages (kpageflags KPF_PGTABLE: first pfn, pages), the unmap's
    # among them (None: the capture did not tell them apart)
    page_table_runs: tuple[tuple[int, int], ...] | None = None
    # pages per munmap where the release is several (a punch's holes, e2emem `punch`'s GAP), in
    # the unmapped runs' order; 0: one munmap
    unmap_chunk: int = 0
    pcp_read_at_release: bool = False       # the release CPU's zones' count/high read at the unmap
    decay_synced: bool = False              # 6.12: no decay step can fall inside the release (PreRecord.decay_synced)
    # the nodes the faults after the unmap were bound to, faults_after on each (e2emem binds one
    # part of its area per node on a guest of several); empty: the default policy, which takes
    # the release CPU's node first
    fault_nodes: tuple[int, ...] = ()
    cpu_node: int | None = None             # the release CPU's node (None: not read)
    ours_node: int | None = None            # ours_cpu's node (None: not recorded)
    # pages known to be on the release CPU's order-0 lists, oldest first (the rest of the
    # count is of unknown position, newer)
    pcp_known: tuple[Run, ...] = ()
    # every per-cpu list's pages, walked by the capture (empty: not walked, an older capture)
    pcp_lists: tuple[PcpContents, ...] = ()
    # drop_caches: the pages the page cache's xarray-node slabs held before it (/proc/slabinfo's
    # radix_tree_node), which the drop frees with the pages (None: not read, older records)
    xarray_slab_pages: int | None = None

    def pcp_contents(self, key: str, cpu: int) -> PcpContents | None:
        return next((c for c in self.pcp_lists if c.zone == key and c.cpu == cpu), None)

    @property
    def unknown_piece_runs(self) -> tuple[tuple[int, int], ...] | None:
        """Runs of pages a drain of per-cpu pages of unknown position can give back: the
        flagless ones (a page on a per-cpu list carries no flag) and, for an unmap, the page
        tables (its PTE tables, pt_freed, and each THP's deposited one join those drains by
        count). None: the capture did not tell flagless pages apart."""
        if self.flagless is None:
            return None
        return self.flagless + ((self.page_table_runs or ()) if self.kind == "munmap" else ())

    def __post_init__(self):
        late = {k: v for k, v in self.read_at_s.items() if v > 0}
        if late:
            raise ModelError(f"inputs read after the release: {late}: the model predicts from before it")


@dataclass(frozen=True)
class FreedPages:
    """What the release gives to the page allocator, per the kernel's unmap rules."""
    runs: tuple[Run, ...]                   # order-0 runs and whole THPs (huge=True, 2^pb pages)
    deferred_thp: int                       # THPs partly unmapped: left on the deferred split queue

    @property
    def pages(self) -> int:
        return sum(r.pages for r in self.runs)


def pages_freed_by_unmap(mapped, unmapped, pageblock_order: int = 9) -> FreedPages:
    """Pure: which pages munmap frees. A 4 KiB page goes when unmapped; a THP only when none of
    its pages stays mapped (mm/huge_memory.c deferred_split_folio otherwise), and then whole."""
    thp = 1 << pageblock_order
    still = {}                              # THP head -> mapped pages not unmapped
    for r in mapped:
        if r.huge:
            for p in range(r.pfn, r.pfn + r.pages):
                still[p & ~(thp - 1)] = still.get(p & ~(thp - 1), 0) + 1
    for r in unmapped:
        if r.huge:
            for p in range(r.pfn, r.pfn + r.pages):
                still[p & ~(thp - 1)] -= 1
    runs, seen, deferred = [], set(), set()
    for r in unmapped:
        if not r.huge:
            runs.append(Run(r.pfn, r.pages))
            continue
        for head in range(r.pfn & ~(thp - 1), r.pfn + r.pages, thp):
            if head in seen or head in deferred:
                continue
            if still.get(head, 0) <= 0:
                seen.add(head)
                runs.append(Run(head, thp, True))
            else:
                deferred.add(head)
    return FreedPages(tuple(runs), len(deferred))


# mm/mmu_gather.c (6.1): the gather's first batch holds MMU_GATHER_BUNDLE = 8 pages, each
# further one MAX_GATHER_BATCH = (PAGE_SIZE - 16) / 8 = 510, at most MAX_GATHER_BATCH_COUNT =
# 10000 / 510 = 19 of them before a forced flush; tlb_batch_pages_flush frees batch by batch.
GATHER_LOCAL, GATHER_BATCH, GATHER_BATCHES = 8, 510, 19


# mm/truncate.c (6.1): drop_caches frees page cache a pagevec (PAGEVEC_SIZE = 15) at a time,
# pagevec_release -> release_pages.
PAGEVEC = 15


def free_order(runs, version: tuple[int, int], kind: str = "munmap",
               tables: int = 0) -> list[tuple[int, int, bool, bool]]:
    """Pure: the release's pages (VA order) -> (pfn, pages, huge, descending) in the order the
    kernel frees them. 6.1 release_pages (mm/swap.c) frees a THP at once (__folio_put_large)
    but collects order-0 pages with list_add and frees them after the batch
    (free_unref_page_list): per gather batch, THPs in VA order, then 4 KiB pages in reverse.
    6.12 folios_put_refs -> free_unref_folios keeps the batch's order.
    tables: PTE tables the unmap frees after the pages (free_pgtables -> pte_free_tlb ->
    tlb_remove_page: entries of the same gather batches, after the last page), pfn -1: their
    positions are not known."""
    runs = list(runs) + ([Run(-1, tables)] if tables > 0 else [])
    if version >= (6, 2):
        return [(r.pfn, r.pages, r.huge, False) for r in runs]
    out: list = []
    sizes = [GATHER_LOCAL] + [GATHER_BATCH] * GATHER_BATCHES if kind == "munmap" else [PAGEVEC] * 1000
    it = iter(runs)
    cur = next(it, None)
    left = cur.pages if cur else 0
    while cur is not None:
        for size in sizes:
            thps, small, room = [], [], size
            while room and cur is not None:
                if cur.huge:
                    thps.append((cur.pfn, cur.pages, True, False))   # one entry: a whole THP
                    room -= 1
                    cur = next(it, None)
                    left = cur.pages if cur else 0
                    continue
                k = min(room, left)
                start = cur.pfn + cur.pages - left if cur.pfn >= 0 else -1
                small.append((start, k, False, True))
                room -= k
                left -= k
                if not left:
                    cur = next(it, None)
                    left = cur.pages if cur else 0
            out += thps + small[::-1]
            if cur is None:
                break
    return out


def gather_free_count(freed: FreedPages) -> int:
    """6.12: free_count on the release's CPU when the region's pages begin to go back. The zap
    frees each THP's deposited table at once (+1 each), and each gather batch page it allocates
    when a batch fills (tlb_next_batch: after the first GATHER_LOCAL entries, then every
    GATHER_BATCH) halves it (rmqueue_pcplist), from 0 after the workload's own allocations.
    ftrace, 128 THPs: the release's first flush freed 2172 pages = 124 + 4 x 512."""
    fc, nr, cap, batches = 0, 0, GATHER_LOCAL, 0
    for r in freed.runs:
        for _ in range(1 if r.huge else r.pages):
            fc += 1 if r.huge else 0
            nr += 1
            if nr == cap and batches < GATHER_BATCHES:
                fc >>= 1
                nr, cap, batches = 0, GATHER_BATCH, batches + 1
    return fc


def _chunk_unmaps(runs, chunk: int):
    """Pure: the release's runs (VA order) cut into its munmaps of `chunk` pages each (a punch's
    holes), each with the gather batch pages it allocates."""
    out, part, left = [], [], chunk
    for r in runs:
        pfn, n = r.pfn, r.pages
        while n:
            k = min(n, left)
            part.append(Run(pfn, k, r.huge))
            pfn, n, left = pfn + k, n - k, left - k
            if not left:
                out.append(part)
                part, left = [], chunk
    if part:
        out.append(part)
    return [(p, gather_batches(p)) for p in out]


def gather_batches(runs) -> int:
    """Pure: the batch pages one munmap's gather allocates for these runs (tlb_next_batch: one
    per GATHER_BATCH entries after the first GATHER_LOCAL, a THP one entry, GFP_NOWAIT)."""
    entries = sum(1 if r.huge else r.pages for r in runs)
    return min(GATHER_BATCHES, max(0, -(-(entries - GATHER_LOCAL) // GATHER_BATCH)))


def gather_pages(freed: FreedPages, version: tuple[int, int]) -> int:
    """Order-0 pages the unmap itself puts on the per-cpu lists before the region's pages go:
    zap_huge_pmd frees each THP's deposited page table at once (zap_deposited_table ->
    pte_free), less the gather's own batch pages it allocates (tlb_next_batch, one per
    GATHER_BATCH entries after the first GATHER_LOCAL, GFP_NOWAIT). Their positions are not
    known: they join the pages of unknown position. (6.1 and 6.12 alike.)"""
    return sum(1 for r in freed.runs if r.huge) - gather_batches(freed.runs)


class PcpList:
    """One CPU's per-cpu lists of one zone, in pages: the workload's order-0 movable list, the
    THP list, and `unknown` pages already on the lists before the release (their pfns are not
    in /proc; taken as the oldest of the order-0 list, see the pcp_placement term). Where the
    capture walked the lists (`exact`), every list as it was instead: the others' pages in
    `other`, drained as free_pcppages_bulk does (_bulk_exact)."""

    def __init__(self, zone: Zone, pcp: Pcp, version: tuple[int, int], unknown_elsewhere: bool = False,
                 high_min: int | None = None, order0_unknown: int | None = None, thp_left: bool | None = None,
                 thp_heads: tuple[int, ...] | None = None, batched_decay: bool = False, free_count: int = 0,
                 known: tuple[Run, ...] = (), elsewhere_before_thp: bool = False, unknown_last: bool = False,
                 thps_seen_all: bool = False, exact: PcpContents | None = None):
        self.zone, self.batch, self.version = zone, max(1, pcp.batch), version
        self.elsewhere_before_thp = elsewhere_before_thp   # see _bulk
        self.batched_decay = batched_decay
        self.high = pcp.high
        # 6.12: high_min is the zone's, the same on every CPU (zone_highsize); zoneinfo prints only
        # the current high, which an idle CPU's decay has brought down to high_min
        self.high_min = pcp.high if high_min is None else high_min
        self.order0: list[list[int]] = []   # [pfn, n] oldest first; pfn -1: unknown pages
        self.thp: list[int] = []            # THP heads, oldest first
        self.before: set[int] = set()       # of those, THPs from before the release (-1: where unknown)
        self.thp_drains: list[int] = []     # THP heads in the order drains took them (-1: unknown)
        self.flushes: list[int] = []        # pages asked of each flush a free set off (free_pcppages_bulk's count)
        self.count = pcp.count
        # pages on lists a drain reaches last (round robin after its own list)
        self.elsewhere = pcp.count if unknown_elsewhere else 0
        # exact: every list as walked, by list index; the order-0 movable and movable THP lists
        # are order0 and thp, the others' pages (oldest first) here
        self.other: dict[int, list[int]] | None = None
        if exact is not None:
            left = self._exact(exact, pcp.count)
        elif order0_unknown is not None:
            self.elsewhere = max(0, pcp.count - order0_unknown)
            # A THP allocation refills the THP list with two (rmqueue_pcplist: batch >> order, at
            # least 2), so a workload that just took THPs can leave one there, the oldest on its
            # list, which the first THP drain takes before any of the release's (ftrace: the
            # model's 506 THP drains are the kernel's). thp_heads, the flagless THP-sized blocks
            # before the release (PreRelease.flagless_thps), say per zone whether one is there
            # (an integrity cycle's touch left none) and, if one, where (two nodes: one on each
            # node's list). Without them (older captures) 6.1 presumes one when >= 512 pages
            # sit off the order-0 list, 6.12 none (its one such stored run matched block for
            # block without). thp_left: the pcp_residue term's runs with the other parity.
            mine = [h for h in thp_heads or () if zone.start <= h < zone.end]
            if thp_left is None:
                thp_left = self.version < (6, 2) if thp_heads is None else bool(mine)
            # one the capture saw here is on the list whatever the order-0 list holds: that
            # takes what the THP leaves (two nodes: node 1's list held 515 pages, one THP).
            # thps_seen_all (the pcp_residue term's runs): as many as it saw there, as far as
            # the count holds them, positions unknown where it saw more (a flagless THP-sized
            # block need not be on a list: two hinted destinations' were not, a 6 GiB guest's
            # Normal list held 1322 pages and two of the three seen, drained first)
            pb = 1 << zone.pb_order
            if thp_left and (self.elsewhere >= pb or (mine and pcp.count >= pb)):
                n = max(1, min(len(mine), pcp.count // pb)) if thps_seen_all else 1
                for i in range(n):
                    head = mine[i] if len(mine) == n else -1
                    self.thp.append(head)
                    self.before.add(head)
                    self.elsewhere = max(0, self.elsewhere - pb)
        if exact is None:
            left = pcp.count - self.elsewhere - (len(self.thp) << zone.pb_order)
        for r in known if exact is None else ():                     # [pfn, pages, descending, from before the release]
            k = min(r.pages, max(0, left))
            if k:
                self.order0.append([r.pfn, k, False, True])
                left -= k
        if left < 0:                            # taken since the walk: the newest order-0 pages
            self._take_newest(-left)
        elif left and exact is not None:        # the unmap's own page tables (unmovable): list 0's newest
            self._unknown_to_list0(left)
        elif left and unknown_last and exact is None:   # on lists the round robin reaches last (see _bulk)
            self.elsewhere += left
        elif left:
            self.order0.append([-1, left, False])
        self.free_factor = 0                # 6.1: halved by every allocation; the touch made it 0
        self.free_count = free_count        # 6.12: pages freed in a row
        self.best = -1                      # largest merged order reaching a buddy list
        self.refilled = False               # an allocation found no page, on the lists or the buddy's
        self.faults_took_unknown = False    # an allocation took a page of unknown list (allocate)
        self.elsewhere_late = False         # a flush from order 0 reached THPs before pages of unknown list
        self.unknown_drained = 0
        self.unknown_thps_drained = 0       # of those, whole THPs: a free block each, not placed

    def _exact(self, c: PcpContents, count: int) -> int:
        """Lists as walked; returns the count's pages beyond them (pages of unknown position:
        the unmap's own page tables, unmovable, so the newest on list 0; negative: fewer than
        walked)."""
        n = self.nlists = len(c.lists)
        self.pindex0 = MOVABLE                          # order_to_pindex(MIGRATE_MOVABLE, 0)
        self.pindex_thp = n - 1                         # the movable THP list (or the only one)
        self.other = {i: list(li) for i, li in enumerate(c.lists)
                      if li and i not in (self.pindex0, self.pindex_thp)}
        self.elsewhere = sum(len(li) << pindex_order(i, n)[0] for i, li in self.other.items())
        for h in c.lists[self.pindex_thp]:
            self.thp.append(h)
            self.before.add(h)
        for pfn in c.lists[self.pindex0]:               # [pfn, pages, descending, from before]
            last = self.order0[-1] if self.order0 else None
            if last and last[1] == 1 and pfn in (last[0] - 1, last[0] + 1):
                last[2] = pfn < last[0]
            if last and not last[2] and pfn == last[0] + last[1]:
                last[1] += 1
            elif last and last[2] and pfn == last[0] - 1:
                last[0] -= 1
                last[1] += 1
            else:
                self.order0.append([pfn, 1, False, True])
        return count - c.pages()

    def _unknown_to_list0(self, n: int) -> None:
        """Exact lists: n unmovable pages of unknown position (page tables) as list 0's newest."""
        self.other.setdefault(0, []).extend([-1] * n)
        self.elsewhere += n

    def _take_newest(self, n: int) -> None:
        """n pages taken since the walk (which list is not known): the order-0 movable list's
        newest, then the other lists' (list 0 first), so the lists hold the count."""
        while n > 0 and self.order0:
            ent = self.order0[-1]
            k = min(n, ent[1])
            if ent[2] and ent[0] >= 0:
                ent[0] += k
            ent[1] -= k
            if not ent[1]:
                self.order0.pop()
            n -= k
        for p in sorted(self.other):
            lst, size = self.other[p], 1 << pindex_order(p, self.nlists)[0]
            while n > 0 and lst:
                lst.pop()
                self.elsewhere -= size
                n -= size

    def free(self, run: Run, desc: bool = False) -> None:
        pb = self.zone.pb_order
        if self.high <= 0:                  # no pcp (boot pageset): straight to the buddy lists
            o = self.zone.free_block(run.pfn, pb)[1] if run.huge else self.zone._free_run(run.pfn, run.pages)
            self.best = max(self.best, o)
            return
        if run.huge:
            for head in range(run.pfn, run.pfn + run.pages, 1 << pb):
                self.thp.append(head)
                self._added(1 << pb, thp=True)
            return
        lo, hi = run.pfn, run.pfn + run.pages     # pages not yet freed: [lo, hi)
        while lo < hi:
            k = min(hi - lo, max(1, self.high - self.count))
            if desc:                               # freed high to low: the oldest is the highest
                self.order0.append([hi - k, k, True])
                hi -= k
            else:
                self.order0.append([lo, k, False])
                lo += k
            self._added(k, thp=False)

    def free_unknown(self, n: int) -> None:
        """n order-0 pages of unknown position freed onto the lists (the unmap's PTE tables)."""
        if self.high <= 0:
            self.unknown_drained += n
            return
        while n > 0:
            k = min(n, max(1, self.high - self.count))
            if self.other is not None:          # page tables are unmovable: list 0, and a flush starts there
                self._unknown_to_list0(k)
            else:
                self.order0.append([-1, k, False])
            self._added(k, thp=False, list0=self.other is not None)
            n -= k

    def _high(self) -> int:
        return self.high

    def _added(self, k: int, thp: bool, list0: bool = False) -> None:
        self.count += k
        b = self.batch
        if self.version >= (6, 2):
            # free_unref_page_commit adds a folio's pages while free_count is under the cap, so a
            # THP can take it past (ftrace: flushes of 2172 = 124 + 4 x 512 pages, not 2016)
            cap = b << PCP_BATCH_SCALE_MAX
            if thp:
                self.free_count += k if self.free_count < cap else 0
            else:
                self.free_count = max(self.free_count, min(self.free_count + k, cap))
            high = self.high
            if self.count < high:
                return
            # nr_pcp_high returns the old high and lifts pcp->high to hold a batch of frees
            # (high_max is not printed: taken as no limit)
            if self.high < self.free_count + b:
                self.high = self.free_count + b
            n = b if high < b else min(max(self.free_count, b), high - b)
        else:
            if self.count < self.high:
                return
            if self.high < b:
                n = 1
            else:
                n = b << self.free_factor
                if n < self.high - b and self.free_factor < PCP_BATCH_SCALE_MAX:
                    self.free_factor += 1
                n = min(max(n, b), self.high - b)
        self.flushes.append(n)
        self._bulk(min(n, self.count), thp_first=thp, from_list0=list0)

    def _bulk(self, n: int, thp_first: bool, from_list0: bool = False) -> None:
        if self.other is not None:
            self._bulk_exact(n, 0 if from_list0 else self.pindex_thp if thp_first else self.pindex0)
            return
        # free_pcppages_bulk: the list the page went to first, then the others round robin;
        # from_list0: decay's, from the first list (order-0 unmovable) on, so every list of
        # unknown pages comes before the THP list, the last. From the order-0 movable list the
        # round robin reaches the reclaimable and order 1-3 lists before the THP list and the
        # unmovable order-0 list after it; which of those the pages of unknown list are on is
        # not known: the model's run takes them last, elsewhere_before_thp (a run for what goes
        # back from before: pcp_unknown_pages and the free-memory check) before the THPs. Traced (6.1 integrity, kmem/mm_page_pcpu_drain):
        # a release's last flush, 2016 asked, took 183 order-0 movable pages, then 259 pages
        # from before it on the reclaimable and order 1-3 lists, then 4 THPs: 2430 in all,
        # and the guest's free memory read those 259 pages (0.77 MiB) over the model's run.
        lists = (self._drain_thp, self._drain_order0) if thp_first else (self._drain_order0, self._drain_thp)
        if not thp_first and self.elsewhere_before_thp:
            lists = (self._drain_order0, self._drain_elsewhere, self._drain_thp)
        elif not thp_first and not from_list0 and self.elsewhere and self.thp:
            self.elsewhere_late = True          # the order would matter (the term's other run)
        if from_list0:
            lists = (self._drain_elsewhere, self._drain_order0, self._drain_thp)
        for drain in lists:
            n = drain(n)
            if n <= 0:
                return
        self._drain_elsewhere(n)

    def _bulk_exact(self, n: int, pindex: int) -> None:
        """free_pcppages_bulk as written (6.1 and 6.12): from the list the freed page went to,
        each list drained (oldest first) until the count is met or it is empty, then the next
        non-empty list index, round and round."""
        p = pindex - 1
        while n > 0:
            p = next_list(p, self.nlists, self._listed)
            if p is None:
                return
            if p == self.pindex0:
                n = self._drain_order0(n)
            elif p == self.pindex_thp:
                n = self._drain_thp(n)
            else:
                n = self._drain_other(p, n)

    def _listed(self, p: int) -> bool:
        return bool(self.order0 if p == self.pindex0 else self.thp if p == self.pindex_thp else self.other.get(p))

    def _drain_other(self, p: int, n: int) -> int:
        order, lst = pindex_order(p, self.nlists)[0], self.other[p]
        while n > 0 and lst:
            pfn = lst.pop(0)
            if pfn < 0:                             # the unmap's page tables: position unknown
                self.unknown_drained += 1 << order
            else:
                self.best = max(self.best, self.zone.free_block(pfn, order)[1])
            self.count -= 1 << order
            self.elsewhere -= 1 << order
            n -= 1 << order
        return n

    def _drain_elsewhere(self, n: int) -> int:
        k = min(max(0, n), self.elsewhere)
        self.elsewhere -= k
        self.count -= k
        self.unknown_drained += k
        return n - k

    def _drain_order0(self, n: int) -> int:
        z = self.zone
        while n > 0 and self.order0:
            ent = self.order0[0]                    # [pfn, pages, descending]
            k = min(n, ent[1])
            if ent[0] < 0:
                self.unknown_drained += k
            elif ent[2]:                            # oldest at the top
                self.best = max(self.best, z._free_run(ent[0] + ent[1] - k, k))
            else:
                self.best = max(self.best, z._free_run(ent[0], k))
                ent[0] += k
            ent[1] -= k
            if not ent[1]:
                self.order0.pop(0)
            self.count -= k
            n -= k
        return n

    def _drain_thp(self, n: int) -> int:
        z, pb = self.zone, self.zone.pb_order
        while n > 0 and self.thp:
            head = self.thp.pop(0)
            self.thp_drains.append(head)
            if head < 0:                            # one from before the release: position unknown
                self.unknown_drained += 1 << pb
                self.unknown_thps_drained += 1
            else:
                self.best = max(self.best, z.free_block(head, pb)[1])
            self.count -= 1 << pb
            n -= 1 << pb
        return n

    def allocate(self, n: int, refill: bool = False) -> None:
        """n order-0 movable allocations on this CPU (a fault each): rmqueue_pcplist takes the
        newest page of the list and halves free_factor (6.1) or free_count (6.12). Where the
        model's order-0 list is empty, pages of unknown list may still be on the movable one:
        a fault takes one of those (faults_took_unknown), or, with refill (the term's other
        run) or none left, the list is refilled first (refill)."""
        for _ in range(n):
            if not self.order0 and not refill and self.elsewhere > 0 and self.other is None:
                self.faults_took_unknown = True
                self.allocate_unknown(1)
                continue
            if not self.order0 and not self.refill():
                self.refilled = True                # the buddy lists had no page either
                return
            ent = self.order0[-1]                   # [pfn, pages, descending]: newest last
            if ent[2] and ent[0] >= 0:              # freed high to low: the newest is its low end
                ent[0] += 1
            ent[1] -= 1
            if not ent[1]:
                self.order0.pop()
            self.count -= 1
            if self.version < (6, 2):
                self.free_factor >>= 1
            else:
                self.free_count >>= 1

    def allocate_unknown(self, n: int) -> None:
        """n order-0 allocations of pages of unknown list on this CPU (an unmap's gather batch
        pages, GFP_NOWAIT; a fault where the model's order-0 list is empty): each halves
        free_factor (6.1) or free_count (6.12)."""
        for _ in range(n):
            if self.other is not None:              # GFP_NOWAIT, unmovable: that list's newest
                if not self.other.get(0):
                    self._refill_unmovable()
                if self.other.get(0):
                    self.other[0].pop()
                    self.elsewhere -= 1
                else:
                    continue                        # the buddy lists had none either: no page
            elif self.elsewhere > 0:
                self.elsewhere -= 1
            self.count = max(0, self.count - 1)
            self.free_factor >>= 1
            self.free_count >>= 1

    def _refill_unmovable(self) -> None:
        """Exact lists: rmqueue_bulk into the empty order-0 unmovable list, batch pages from
        the buddy lists (as refill), the first taken at its head (the next allocated)."""
        taken = []
        for _ in range(self.batch):
            pfn = self.zone.rmqueue(0, UNMOVABLE)
            if pfn is None:
                break
            taken.append(pfn)
        self.other[0] = list(reversed(taken))
        self.elsewhere += len(taken)
        self.count += len(taken)

    def refill(self) -> bool:
        """rmqueue_bulk into the empty order-0 list: batch pages from the buddy lists, each the
        low page of the smallest free block (__rmqueue_smallest, whose split halves go back at
        the list heads, so the next is the page after it), added at the list's tail: the first
        taken is the next allocated, the last the first a flush frees. 6.1 takes batch pages;
        6.12 nr_pcp_alloc batch << alloc_factor, which every free of the release halved to 0,
        and lifts high by that batch (high_max not printed: no limit, as in free). The pages
        were not the release's: not residue (a fourth field)."""
        z = self.zone
        taken = []
        for _ in range(self.batch):
            pfn = z.rmqueue(0, MOVABLE)
            if pfn is None:
                break
            taken.append(pfn)
        if not taken:
            return False
        runs: list[list[int]] = []
        for pfn in taken:
            if runs and runs[-1][0] + runs[-1][1] == pfn:
                runs[-1][1] += 1
            else:
                runs.append([pfn, 1])
        for pfn, k in reversed(runs):               # newest last: the first taken at the end
            self.order0.append([pfn, k, True, True])
        self.count += len(taken)
        if self.version >= (6, 2):
            self.high += self.batch
        return True

    def decay_step(self) -> None:
        """One decay_pcp_high call (vmstat's, once a second): run until high reaches high_min,
        what is over it goes back (run_release)."""
        self.high = max(self.count - (self.batch << PCP_BATCH_SCALE_MAX), self.high - (self.high >> 3),
                        self.high_min)
        to_drain = self.count - self.high
        step = self.batch if self.batched_decay else max(to_drain, 1)
        while to_drain > 0:                         # KernelSpec.batched_decay: batch per call
            self._bulk(min(to_drain, step), thp_first=False, from_list0=True)
            to_drain -= step

    def decay_inside(self, at: str) -> None:
        """6.12: a decay step that falls inside the release: at its "start" (after the lists
        were read: the release's frees then flush at the lowered high) or at its "end", before
        its last order-0 free (a deposited page table, zap_huge_pmd): decay leaves the count at
        high, so that free flushes what free_count has reached (nr_pcp_free) from the order-0
        lists first."""
        if self.version < (6, 2) or self.high <= 0:
            return
        self.decay_step()
        if at == "end" and self.count >= self.high:
            self._bulk(max(self.batch, min(self.free_count, self.high - self.batch)), thp_first=False,
                       from_list0=True)

    def drain_all(self) -> None:
        """free_high on 6.1 (nr_pcp_free returns pcp->count): every list back to the buddy lists."""
        self._bulk(self.count, thp_first=False, from_list0=True)

    def residue(self) -> list[tuple[int, int]]:
        """The release's own pages still on the lists."""
        pb = 1 << self.zone.pb_order
        return [(e[0], e[1]) for e in self.order0 if e[0] >= 0 and len(e) < 4] + \
            [(h, pb) for h in self.thp if h not in self.before]


@dataclass
class Released:
    """The model guest after the release, before any report."""
    machine: Machine
    spec: KernelSpec
    freed: FreedPages
    residue: list[tuple[int, int]]          # the release's pages left on per-cpu lists
    residue_drains: bool                    # 6.12: the residue goes back by decay within seconds
    unknown_drained: int                    # pages of unknown position the drains gave back
    notified: bool                          # a merge reached the reporting order: a pass is requested
    elsewhere_left: int = 0                 # pages of unknown position still on other lists
    # 6.1: the release left free_factor > 0 on its CPU, so one order 1-3 free there before an
    # allocation halves it back to 0 drains that CPU's whole lists (free_high: nr_pcp_free
    # returns pcp->count). Seen: CPU 0's count 6924 -> 185 within a second of our first scan,
    # and the guest's free memory 26.3 MiB up with it.
    free_high_drain: bool = False
    free_high_lists: tuple[str, ...] = ()   # 6.1: the zones whose lists of that CPU were left so
    remote_lists: tuple[str, ...] = ()      # that CPU's lists of other nodes' zones (vmstat drains a batch)
    # of the unknown pages, whole THPs a workload's allocations left on the THP list: each is a
    # free block after the release at a position the model does not know
    unknown_thps_drained: int = 0
    thps_before: int = 0                    # THPs from before the release the model put on the lists
    # THP heads in the order the drains took them (-1: one of unknown position), as ftrace's
    # kmem/mm_page_pcpu_drain shows the kernel's
    thp_drains: tuple[int, ...] = ()
    # per zone key, the count of each flush a free set off on the release's CPU, in order (a
    # kprobe on free_pcppages_bulk shows the kernel's)
    flushes: dict = field(default_factory=dict)
    faults_refilled: bool = False           # the workload's faults after it found no free page at all
    faults_took_unknown: bool = False       # ... found the model's order-0 list empty (PcpList.allocate)
    elsewhere_drained_late: bool = False    # PcpList.elsewhere_late on a list
    drained_after: bool = False             # the release's CPU's lists drained whole after it (6.1 drop_caches)
    # 6.12: free_count still >= batch on the release's CPU after it: two order 1-3 frees there
    # can drain up to batch << 5 (free_high), which the model cannot time
    free_count_high: bool = False
    # 6.12: the release CPU's lists and the free blocks (of the reporting order and up) before
    # vmstat's first decay tick after the release and after each (run_release's tick_layouts)
    decay_ticks: tuple[DecayTick, ...] = ()
    # ... and the model guest before the first of those ticks, where a list had still to decay
    before_decay: Machine | None = None


@dataclass(frozen=True)
class DecayTick:
    """The model guest after some of 6.12's decay ticks: each list's high and count (zone key ->
    pages) and the free blocks of every order (zone key -> [(pfn, order, mt)])."""
    highs: dict
    counts: dict
    blocks: dict


def zone_model(zs: ZoneState, spec: KernelSpec) -> Zone:
    return Zone(node=zs.node, name=zs.name, start_pfn=zs.start, spanned=zs.end - zs.start, spec=spec,
                wmark_min=zs.wmark_min, wmark_low=zs.wmark_low, wmark_high=zs.wmark_high, boost=zs.boost,
                lowmem_reserve=zs.lowmem_reserve, nr_reserved_highatomic=zs.highatomic)


def machine_before(pre: PreRelease) -> tuple[Machine, KernelSpec]:
    """The model guest as it was read: its free blocks, reported ones at their lists' tails."""
    spec = kernel_spec(pre.kernel)
    zones = {zs.key: zone_model(zs, spec) for zs in pre.zones if zs.end > zs.start}
    m = Machine(list(zones.values()), spec)
    unrep = sorted((b for b in pre.blocks if not b.reported), key=lambda b: -b.pfn)
    for b in unrep + [b for b in pre.blocks if b.reported]:
        z = m.zone_of(b.pfn)
        if b.order >= z.pb_order:
            for p in range(b.pfn, b.pfn + (1 << b.order), 1 << z.pb_order):
                z.set_pageblock_mt(p, b.mt)
        elif b.mt != MOVABLE:
            z.set_pageblock_mt(b.pfn, b.mt)
        z.add_free_block(b.pfn, b.order, b.mt, reported=b.reported, tail=True)
    return m, spec


def release_tables_split(m: Machine, freed: FreedPages, cpu_node: int | None, pages: int,
                         tables: tuple[tuple[int, int], ...] | None = None) -> tuple[dict[str, int], str | None]:
    """Pure: `pages` of the unmap's own (THPs' deposited page tables, less the gather's batch
    pages) per zone key whose per-cpu lists take them, and the zone of the largest share.
    Each THP's table was allocated in the fault that took the THP
    (__do_huge_pmd_anonymous_page: the folio, then pte_alloc_one), on
    the release CPU's node, down the same zonelist: so in proportion to the release's THPs
    per zone of that node (by its pages where it has no THP there, e.g. all on another node).
    The largest share gets the rounding. Six releases over two zones: a 2-node one (no THP on
    node 0's DMA) had 456 on node 0's DMA32 list and 55 on DMA; the model's counts at their
    flushes matched within 2 x batch, the flush counts exactly.
    tables: the page-table pages the capture saw before the release (e2epfn's class T, where
    it has them): the tables are where those are, in proportion. A fault's table need not come
    from its THP's zone: the table is order 0, taken from the first zone over its watermark,
    the THP from the first with an order-9 block. A restored 3 GiB release (a buddyinfo read
    before the touch) had its 818 tables all in Normal and 346 of its 767 THPs in DMA32: the
    THPs' share put 344 tables on the DMA32 list, and the Normal list's flushes out of phase
    left 4 THPs there the kernel had drained (1502.0 predicted, 1509.8 measured); by the tables
    all 764 went to Normal, where the capture after it saw 770 go."""
    share: dict = {}
    for st, n in tables or ():
        z = next((z for z in m.zones if z.start <= st < z.end), None)
        if z is not None and (cpu_node is None or z.node == cpu_node):
            share[z.key] = share.get(z.key, 0) + n
    if sum(share.values()) < pages:
        # fewer there than the unmap frees: its tables are elsewhere (another node's), and
        # what is there is other processes'
        share = {}
    for huge_only in (True, False):
        if share:
            break
        for r in freed.runs:
            z = m.zone_of(r.pfn)
            if (r.huge or not huge_only) and (cpu_node is None or z.node == cpu_node):
                share[z.key] = share.get(z.key, 0) + r.pages
        if share:
            break
    total = sum(share.values())
    if not total:
        return {}, None
    out = {k: pages * n // total for k, n in share.items()}
    top = max(share, key=lambda k: (share[k], m.zone(k).start))
    out[top] += pages - sum(out.values())
    return out, top


def run_release(pre: PreRelease, *, residue: int | None = None, count_offset: int = 0,
                thp_left: bool | None = None, free_high_whole: bool = False, remote_batch: bool = False,
                decay_step_at: str = "", fault_refill: bool = False,
                elsewhere_before_thp: bool = False, unknown_last: bool = False,
                thps_seen_all: bool = False, tick_layouts: bool = False) -> Released:
    """Free the release's pages through the per-cpu lists of the CPU it runs on.

    residue: instead, leave exactly the newest `residue` pages of the release on the lists (a
    THP stays whole) and give the rest straight to the buddy lists: the bounds of the
    pcp_residue term.
    count_offset: pages of unknown position more (or fewer) on that CPU's lists when the release
    begins than zoneinfo showed: the pcp_residue term's runs for what can change the count
    between that read and the release.
    thp_left: whether the workload's THP allocations left a THP on the list (None: the model's
    rule, PcpList).
    decay_step_at: 6.12, one of vmstat's decay steps inside the release: "start" (after the
    lists were read, before the first free) or "end" (before its last order-0 free).
    free_high_whole: 6.1, every list the faults left with free_factor > 0 drained whole, as one
    order 1-3 free there would (free_high), at a time the model cannot know.
    remote_batch: one batch drained from every list of another node's zone, as vmstat_update
    does ~3 s after the CPU last touched that zone's counters (refresh_cpu_vm_stats: expire,
    drain_zone_pages), from the lists' first (order-0 unmovable) on.
    fault_refill: where the workload's faults after the release find the model's order-0 list
    empty, the kernel's was too: they refill it from the buddy lists (PcpList.refill) instead
    of taking pages of unknown list.
    elsewhere_before_thp: a flush set off by an order-0 free drains the pages of unknown list
    before the THP list (PcpList._bulk).
    unknown_last: where the lists were not read whole (pcp_taken false), their pages of unknown
    position are on lists the round robin reaches last, not the order-0 movable list's oldest.
    thps_seen_all: every flagless THP-sized block the capture saw in a zone on that CPU's list,
    as far as its count holds them, not one (PcpList).
    tick_layouts: 6.12, keep the lists' highs and the free blocks after each of vmstat's decay
    ticks (Released.decay_ticks)."""
    m, spec = machine_before(pre)
    freed = pages_freed_by_unmap(pre.mapped, pre.unmapped, spec.pageblock_order)
    seq = free_order(freed.runs, spec.version, pre.kind, pre.page_tables if pre.kind == "munmap" else 0)
    if residue is not None:
        return _forced_residue(m, spec, freed, [e for e in seq if e[0] >= 0], residue, pre.order)
    cpu = pre.cpu if pre.cpu is not None else 0
    chunked = bool(pre.unmap_chunk) and pre.kind == "munmap" and spec.version < (6, 2)
    # (several munmaps each give back their own batch pages: only the deposited tables stay)
    extra = (sum(1 for r in freed.runs if r.huge) if chunked else gather_pages(freed, spec.version)) \
        if pre.kind == "munmap" else 0
    lists: dict[str, PcpList] = {}
    # The unmap's own pages (its page tables, less the gather's batch pages) come and go on the
    # lists of the zones its page tables were taken from (release_tables_split); the count's
    # uncertainty and the PTE tables go with the largest share. (They went to the DMA zone's
    # list before, which no free reaches: on a settled 2 GiB release that read 2 MiB under the
    # drop and 0.6 MiB over the guest's free memory.)
    split, tables_zone = release_tables_split(m, freed, pre.cpu_node, extra,
                                              pre.page_table_runs if pre.kind == "munmap" else None)
    nodes = {zs.node for zs in pre.zones}
    for zs in pre.zones:
        if zs.end <= zs.start:
            continue
        p = zs.pcp(cpu) or Pcp(cpu, 0, 0, 1)
        walk = pre.pcp_contents(zs.key, cpu)
        if walk is not None and not pre.pcp_read_at_release:
            # zoneinfo's count was printed before the scan, the walk came after it
            p = Pcp(p.cpu, walk.pages(), p.high, p.batch)
        fc = 0
        if p.high > 0 and zs.key in split:
            p = Pcp(p.cpu, max(0, p.count + split[zs.key] + (count_offset if zs.key == tables_zone else 0)),
                    p.high, p.batch)
        if p.high > 0 and zs.key == tables_zone:
            fc = gather_free_count(freed) if pre.kind == "munmap" and spec.version >= (6, 2) else 0
        lists[zs.key] = PcpList(m.zone(zs.key), p, spec.version,
                                high_min=zs.high_min(len(nodes)) if zs.pcps else p.high,
                                order0_unknown=min(p.count, p.batch) if pre.pcp_taken else None,
                                thp_left=thp_left, thp_heads=pre.flagless_thps, batched_decay=spec.batched_decay,
                                free_count=fc, known=tuple(r for r in pre.pcp_known if zs.start <= r.pfn < zs.end),
                                elsewhere_before_thp=elsewhere_before_thp, unknown_last=unknown_last,
                                thps_seen_all=thps_seen_all, exact=walk)
    if decay_step_at == "start":
        for pl in lists.values():
            pl.decay_inside("start")
    tables_to = lists[tables_zone] if tables_zone is not None and lists[tables_zone].high > 0 else None
    if chunked and tables_to is not None:
        seq = []
        for part, batches in _chunk_unmaps(freed.runs, pre.unmap_chunk):
            # each munmap's gather allocates its batch pages before it frees (each allocation
            # halves free_factor) and frees them after its pages
            seq += [(-2, batches, False, False)] + free_order(part, spec.version, pre.kind) + \
                [(-1, batches, False, False)]
    for pfn, n, huge, desc in seq:
        if pfn == -2:                       # the gather's batch pages, allocated
            tables_to.allocate_unknown(n)
            continue
        if pfn < 0:                         # PTE tables: order-0 pages of unknown position
            if tables_to is not None:
                tables_to.free_unknown(n)
            continue
        while n:                            # a run split where zones meet
            z = m.zone_of(pfn if not desc else pfn + n - 1)
            if desc:
                k = min(n, pfn + n - z.start)
                lists[z.key].free(Run(pfn + n - k, k, huge), desc=True)
            else:
                k = min(n, z.end - pfn)
                lists[z.key].free(Run(pfn, k, huge))
                pfn += k
            n -= k
    if decay_step_at == "end":
        for pl in lists.values():
            pl.decay_inside("end")
    # an anonymous fault takes its node's highest zone first (a node's zonelist is by zone):
    # the nodes the faults were bound to, else the release CPU's (the only one, on one node)
    fault_nodes = pre.fault_nodes or ((next(iter(nodes)),) if len(nodes) == 1 else
                                      (pre.cpu_node,) if pre.cpu_node is not None else ())
    for node in fault_nodes if pre.faults_after else ():
        top = max((pl for pl in lists.values() if pl.high > 0 and pl.zone.node == node),
                  key=lambda pl: pl.zone.start, default=None)
        if top is not None:
            top.allocate(pre.faults_after, refill=fault_refill)
    # 6.12: vmstat's decay, a tick at a time (each tick one decay_pcp_high per zone of that CPU)
    def decays() -> bool:
        return spec.version >= (6, 2) and any(pl.high > pl.high_min for pl in lists.values())

    ticks = [_tick(lists, m)] if tick_layouts and spec.version >= (6, 2) else []
    before_decay = copy.deepcopy(m) if ticks and decays() else None
    while decays():
        for pl in lists.values():
            if pl.high > pl.high_min:
                pl.decay_step()
        if tick_layouts:
            ticks.append(_tick(lists, m))
    free_high_lists = tuple(k for k, pl in lists.items() if pl.free_factor) if spec.version < (6, 2) else ()
    remote_lists = tuple(k for k, pl in lists.items()
                         if pre.cpu_node is not None and pl.zone.node != pre.cpu_node and pl.high > 0)
    if free_high_whole:
        for k in free_high_lists:
            lists[k].drain_all()
    if remote_batch:
        for k in remote_lists:
            pl = lists[k]
            pl._bulk(min(pl.batch, pl.count), thp_first=False, from_list0=True)
    drained_after = False
    if pre.kind == "drop_caches" and spec.version < (6, 2) and len(nodes) == 1:
        # 6.1: the page cache's xarray nodes go back through RCU once the drop removed their
        # pages (radix_tree_node_rcu_free), so after its last free; their reclaimable slab pages
        # are order 1, freed on the drop's CPU while free_factor > 0 (no allocation since), and
        # such a free drains that CPU's lists whole (free_high). Traced (kprobe on
        # free_pcppages_bulk, 2 GiB, 576 MiB dropped): rcu_do_batch -> __unfreeze_partials ->
        # free_unref_page -> free_pcppages_bulk(count = pcp->count = 6236) 24 ms after the drop's
        # last batch, CPU 0's count 0 after it. Slab comes from the highest zone (GFP_KERNEL).
        top = max((pl for pl in lists.values() if pl.high > 0), key=lambda pl: pl.zone.start, default=None)
        if top is not None and top.free_factor:
            top.drain_all()
            drained_after = True
    best = max((pl.best for pl in lists.values()), default=-1)
    return Released(machine=m, spec=spec, freed=freed,
                    residue=[x for pl in lists.values() for x in pl.residue()],
                    residue_drains=spec.version >= (6, 2),
                    unknown_drained=sum(pl.unknown_drained for pl in lists.values()),
                    unknown_thps_drained=sum(pl.unknown_thps_drained for pl in lists.values()),
                    thps_before=sum(len(pl.before) for pl in lists.values()),
                    thp_drains=tuple(h for pl in lists.values() for h in pl.thp_drains),
                    flushes={k: tuple(pl.flushes) for k, pl in lists.items()},
                    elsewhere_left=sum(pl.elsewhere for pl in lists.values()),
                    notified=best >= pre.order,
                    free_high_drain=bool(free_high_lists) and not free_high_whole, free_high_lists=free_high_lists,
                    remote_lists=remote_lists,
                    faults_refilled=any(pl.refilled for pl in lists.values()),
                    faults_took_unknown=any(pl.faults_took_unknown for pl in lists.values()),
                    elsewhere_drained_late=any(pl.elsewhere_late for pl in lists.values()),
                    free_count_high=spec.version >= (6, 2) and any(pl.high > 0 and pl.free_count >= pl.batch
                                                                   for pl in lists.values()),
                    drained_after=drained_after, decay_ticks=tuple(ticks), before_decay=before_decay)


def free_layout(m: Machine) -> dict:
    """The model guest's free blocks of every order: zone key -> [(pfn, order, mt)]."""
    return {z.key: [(pfn, o, mt) for pfn, o, mt, _ in z.free_blocks()] for z in m.zones}


def _tick(lists: dict, m: Machine) -> DecayTick:
    return DecayTick({k: pl.high for k, pl in lists.items()}, {k: pl.count for k, pl in lists.items()}, free_layout(m))


def _forced_residue(m: Machine, spec: KernelSpec, freed: FreedPages, seq, k: int, order: int) -> Released:
    keep: list[tuple[int, int]] = []
    cut = len(seq)
    while cut and k > 0:                    # the newest pages, from the end of the sequence
        pfn, n, huge, desc = seq[cut - 1]
        if huge or n <= k:
            keep.append((pfn, n))
            k -= n
            cut -= 1
            continue
        # part of a run: its newest pages are its low end when freed descending
        keep.append((pfn, k) if desc else (pfn + n - k, k))
        seq = seq[:cut - 1] + [((pfn + k, n - k, huge, desc) if desc else (pfn, n - k, huge, desc))]
        k = 0
    best = -1
    for pfn, n, huge, desc in seq[:cut]:
        z = m.zone_of(pfn)
        o = z.free_block(pfn, spec.pageblock_order)[1] if huge else m.free_runs([(pfn, n)], via_pcp=False)
        best = max(best, o)
    return Released(machine=m, spec=spec, freed=freed, residue=keep, residue_drains=False,
                    unknown_drained=0, notified=best >= order)


# --- the predicted layout against the real one ------------------------------------------

@dataclass(frozen=True)
class LayoutCheck:
    """Predicted free blocks (head, order) vs the real ones, at orders >= min_order."""
    min_order: int
    predicted: int
    real: int
    matched: int
    per_zone_order: dict                    # "zone/order" -> [predicted, real, matched]
    only_predicted: tuple[tuple[int, int], ...]
    only_real: tuple[tuple[int, int], ...]

    @property
    def exact(self) -> bool:
        return self.matched == self.predicted == self.real

    def to_json(self, shown: int = 10) -> dict:
        return {"min_order": self.min_order, "predicted": self.predicted, "real": self.real,
                "matched": self.matched, "exact": self.exact, "per_zone_order": self.per_zone_order,
                "first_only_predicted": [list(x) for x in self.only_predicted[:shown]],
                "first_only_real": [list(x) for x in self.only_real[:shown]],
                "only_predicted": len(self.only_predicted), "only_real": len(self.only_real)}


# --- the prediction -----------------------------------------------------------------------

@dataclass(frozen=True)
class Activity:
    """Guest activity the model cannot schedule, as rates measured in the idle window before the
    release (vmstat pgalloc_* and pgfree deltas over its length), plus what one of our own
    captures costs (its vmstat delta, also measured before the release), and what each of our
    other SSH commands in the window costs (the release's own and the snapshot right after it),
    at least one /proc/vmstat read's (two reads back to back before the window)."""
    alloc_pages_per_s: float = 0.0
    free_pages_per_s: float = 0.0
    capture_alloc_pages: float = 0.0
    captures_in_window: int = 1
    command_alloc_pages: float = 0.0
    commands_in_window: int = 0

    def ours(self, captures: int | None = None) -> float:
        """Pages our captures and commands allocate (and free) in the window."""
        n = self.captures_in_window if captures is None else captures
        return self.capture_alloc_pages * n + self.command_alloc_pages * self.commands_in_window


@dataclass(frozen=True)
class Host:
    backend: str = "anon"
    page_size: int = 4096
    discard_inhibited: bool = False
    poison_val: int = 0
    metric: str = "rss"


def _drop_of(rel: Released, pre: PreRelease, host: Host, params, guest_reports: bool = True) -> tuple[list, list]:
    """Run the reporting passes on a released model guest; per report (t, MiB dropped, Report)."""
    from harness.model.discard import HostConfig, ResidentMap, discard
    from harness.model.reporting import Reporter, run_until_idle
    h = HostConfig(backend=host.backend, page_size=host.page_size, discard_inhibited=host.discard_inhibited,
                   poison_val=host.poison_val)
    res = ResidentMap.from_bytes(pre.held, rel.machine.end_pfn)
    thr = params.order if params.order is not None else pre.order
    rep = Reporter()
    if not guest_reports:                   # no reporting device negotiated: no pass ever runs
        return [], []
    if rel.notified or (params.order is not None and any(
            not r for z in rel.machine.zones for _, o, _, r in z.free_blocks() if o >= thr)):
        rep.request(0.0, params.delay_s)
    passes = run_until_idle(rel.machine, rep, params, thr)
    events = []
    for p in passes:
        for r in p.reports:
            d = discard(r.blocks, h, res)
            got = d.rss_pages if host.metric == "rss" else d.mapping_pages
            events.append((r.t, got / 256, r))
    return events, passes


def settled_release(pre: PreRelease, rel: Released) -> bool:
    """The release's per-cpu drains are the model's alone: one munmap of the workload's
    whole region (a punch's many each split the VMA, and the kernel allocates for that: a
    settled-looking punch had the guest's free memory 3.4 MiB under the model's), the workload
    allocated on its pinned CPU just before (free_factor 0), our commands run on another CPU,
    and its faults after the unmap left no free_high drain possible (6.1 free_factor 0, 6.12
    free_count under batch) without a refill, on the lists they reached: on 6.1 a list they
    did not reach (another zone's: a fault takes its node's highest) can still drain whole,
    which the pcp_residue term's run with those lists drained covers (Released.free_high_lists).
    On 6.12 the lists must also have been read at the unmap (PreRelease.pcp_at_release): decay
    lowers high once a second, and a capture's high a step old put a run 17 MiB off."""
    return (pre.kind == "munmap" and pre.unmapped == pre.mapped and not pre.kept
            and (pre.pcp_taken or bool(pre.pcp_known)) and pre.faults_after > 0
            and pre.ours_cpu is not None and pre.cpu is not None and pre.ours_cpu != pre.cpu
            and not rel.faults_refilled
            and (rel.spec.version < (6, 2) or (pre.pcp_read_at_release and not rel.free_count_high)))


def ours_zone(pre: PreRelease) -> ZoneState | None:
    """The zone our commands' pages come from: the highest populated zone of their CPU's node
    (GFP_KERNEL and user pages take it first). None: that CPU, or its node where there are
    several, unknown."""
    nodes = {zs.node for zs in pre.zones}
    node = next(iter(nodes)) if len(nodes) == 1 else pre.ours_node
    if node is None or pre.ours_cpu is None:
        return None
    return max((zs for zs in pre.zones if zs.end > zs.start and zs.node == node), key=lambda zs: zs.start, default=None)


def ours_list(pre: PreRelease) -> Pcp | None:
    """Our commands' CPU's list of the zone their pages come from (ours_zone)."""
    top = ours_zone(pre)
    return top.pcp(pre.ours_cpu) if top is not None else None


def ours_frees_stay_on_lists(pre: PreRelease, version: tuple[int, int], pages: float) -> bool:
    """6.1: what our commands free on their CPU stays on its per-cpu lists when they cannot
    reach high there (count + pages < high on the list of the zone their pages come from, the
    highest of that CPU's node: GFP_KERNEL and user pages take it first): no flush, and no
    free_high either (free_factor > 0 only after a flush; each allocation halves it, and a
    command allocates before it frees). vmstat never drains a CPU's lists of its own node's
    zones (refresh_cpu_vm_stats); on several nodes that CPU's node must be known (ours_node).
    6.12 drains by free_high once free_count >= batch, which a command's frees reach."""
    if version >= (6, 2) or pre.ours_cpu == pre.cpu:
        return False
    p = ours_list(pre)
    return p is not None and p.high > 0 and p.count + pages < p.high


def other_lists(pre: PreRelease, version: tuple[int, int], pageblock_order: int,
                skip: Pcp | None = None) -> list[tuple[ZoneState, Pcp, int]]:
    """(zone, list, the most one flush frees) of each per-cpu list of a CPU other than the
    release's, as read before it. A free that takes a list to high flushes nr_pcp_free's
    count of its oldest pages: 6.12 free_count clamped to [batch, high - batch], free_count at
    most batch << 5 plus a THP's pages less one (it grows by a page's size while under that);
    6.1 batch << free_factor clamped the same, free_factor one more at each flush. skip: a list
    left out, counted on its own (ours_flush_612)."""
    out = []
    for zs in pre.zones:
        for p in zs.pcps:
            if p.cpu == pre.cpu or p.high <= p.batch or p is skip:
                continue
            most = p.high - p.batch
            if version >= (6, 2):
                most = min(most, (p.batch << PCP_BATCH_SCALE_MAX) + (1 << pageblock_order) - 1)
            out.append((zs, p, most))
    return out


def walked_flush(c: PcpContents, n: int, start: int) -> list[tuple[int, int]]:
    """Pure: (pfn, order) of the pages a flush of n pages takes from a walked list set, as
    free_pcppages_bulk does: from list `start` on, each list oldest first until n is met or
    it is empty, then the next list index (PcpList._bulk_exact). Only pages walked: a list's
    newer pages (frees since) come after them."""
    lists, nl, out = [list(li) for li in c.lists], len(c.lists), []
    p = start - 1
    while n > 0:
        p = next_list(p, nl, lambda i: bool(lists[i]))
        if p is None:
            break
        order = pindex_order(p, nl)[0]
        while n > 0 and lists[p]:
            out.append((lists[p].pop(0), order))
            n -= 1 << order
    return out


def walked_flush_gain(flushes, free_in: dict, size: int, held_in, taken: set) -> tuple[int, set] | None:
    """The held pages (and the regions) that flushes of walked list sets give back, each flush
    [(PcpContents, pages)] from the list index that gives most (which list the free that sets
    it off goes to is not known): a 2^order region completes where its free pages after the
    release and the flushed pages in it make it whole. Regions in `taken` are another term's.
    None: a flushed list was not walked, or two flushed lists share a zone (a region could
    need pages of both)."""
    if any(c is None for c, _ in flushes) or len({c.zone for c, _ in flushes}) < len(flushes):
        return None
    gain, done = 0, set()
    for c, n in flushes:
        best = (0, set())
        for start in range(len(c.lists)):
            got: dict = {}
            for pfn, order in walked_flush(c, n, start):
                for q in range(pfn, pfn + (1 << order)):
                    got[q // size] = got.get(q // size, 0) + 1
            regs = {r for r, k in got.items() if r not in taken and free_in.get(r, 0) + k == size}
            g = sum(held_in(r) for r in regs)
            if g > best[0]:
                best = (g, regs)
        gain += best[0]
        done |= best[1]
    return gain, done


def ours_flush_612(pre: PreRelease, version: tuple[int, int], pageblock_order: int, ours: float) -> int | None:
    """6.12, our commands on a CPU of their own, the capture showing page tables (e2epfn 3):
    what our commands free goes onto that CPU's per-cpu lists and reaches the buddy lists only
    through a flush, which takes the oldest pages: those the lists held before the release,
    flagless then, which complete only regions of such pages (pcp_flush). The most one flush of
    their list (ours_list) gives back, no more than it held: free_high (a run of order 1-3 frees
    while free_count >= batch, which the model cannot rule out: min(count, batch << 5),
    nr_pcp_free) or at high (count + their pages >= high: nr_pcp_free's most, as other_lists).
    That list is then left out of other_lists (other_lists' skip). None where this does not
    apply: 6.1 (ours_frees_stay_on_lists), our CPU unknown or the release's, an older capture,
    whose page tables read as pages in use (the unmap's tables freed look like frees of ours
    there: a stored run's region of 442 of them)."""
    if version < (6, 2) or pre.ours_cpu is None or pre.ours_cpu == pre.cpu or pre.page_table_runs is None:
        return None
    p = ours_list(pre)
    if p is None or p.high <= 0:
        return None
    free_high = min(p.count, p.batch << PCP_BATCH_SCALE_MAX)
    at_high = min(p.high - p.batch, (p.batch << PCP_BATCH_SCALE_MAX) + (1 << pageblock_order) - 1) \
        if p.count + ours >= p.high else 0
    return min(p.count, max(free_high, at_high))


def ours_freed(ours: float, stay: bool, remote: int, flush: int | None) -> float:
    """Pure: how many of our commands' freed pages count as frees reaching the buddy lists, in
    the drop and in the free-memory check alike: where they stay on their CPU's lists (6.1,
    ours_frees_stay_on_lists) only vmstat's batches from its other nodes' lists (remote); where
    one flush of that list is counted instead (6.12, ours_flush_612), none; else all of them."""
    return remote if stay else 0 if flush is not None else ours


def flush_beyond_frees(lists, freed: float) -> tuple[int, int | None]:
    """Pure: pages the flushes of other CPUs' lists ((count, high, most) of other_lists') can
    give back beyond the `freed` pages of frees that set them off, and the least margin to high
    among the lists within reach whose flush gives back more than that margin (None: none). A flush of n
    pages follows the high - count frees that filled the list; a second needs n frees more,
    which the first's n beyond them covers."""
    reach = [(c, h, n) for c, h, n in lists if flush_reached(c, h, n, freed)]
    return sum(n - (h - c) for c, h, n in reach), min((h - c for c, h, _ in reach), default=None)


def flush_reached(count: int, high: int, most: int, freed: float) -> bool:
    """Pure: `freed` frees take a list to its high, and its flush gives back more than they."""
    return count + freed >= high and most > high - count


def ours_remote_batches(pre: PreRelease) -> int:
    """Pages vmstat may give back from our CPU's lists of other nodes' zones over a phase: one
    batch from each that holds pages (refresh_cpu_vm_stats: 3 s after the CPU last changed
    that zone's counters, drain_zone_pages, once). Seen in 3 of 4 two-node runs: CPU 1's
    node-0 count 63 lower once reporting was over, its node-1 count unchanged."""
    if pre.ours_node is None or pre.ours_cpu is None:
        return 0
    return sum(min(zs.pcp(pre.ours_cpu).count, zs.pcp(pre.ours_cpu).batch) for zs in pre.zones
               if zs.node != pre.ours_node and zs.pcp(pre.ours_cpu) and zs.pcp(pre.ours_cpu).high > 0)


def spare_blocks(p, capacity: int) -> int:
    """Pure: how many more unreported blocks a pass could have taken in the zone where it had
    the least room, before a list's budget stops it (page_reporting_cycle): what is left of
    the zone's scatterlist (its isolated blocks less capacity per full report) and a report's
    worth per report the last list's budget still allows. A pass that stopped on budget has
    none. -1: no list was visited."""
    zones: dict = {}
    for c in p.cycles:
        zones.setdefault(c.zone, []).append(c)
    room = []
    for cycles in zones.values():
        busy = [c for c in cycles if c.isolated or c.full_reports]
        if not busy:
            continue
        if any(c.stop == "budget" for c in cycles):
            room.append(0)
            continue
        in_sg = sum(c.isolated for c in cycles) - capacity * sum(c.full_reports for c in cycles)
        last = busy[-1]
        room.append(max(0, capacity - in_sg) + max(0, last.budget - last.full_reports) * capacity)
    return min(room, default=-1)


def closest_first(fill: tuple[int, int, int]) -> tuple[int, int]:
    """Sort key of (missing pages, held pages, region) for an upper bound: the regions closest
    to whole first and, of those equally close, the one the host holds most of."""
    return fill[0], -fill[1]


def predict_release(pre: PreRelease, *, host: Host = Host(), params=None, noise_mib: float,
                    activity: Activity = Activity(), sample_period_s: float = 0.1, guest_reports: bool = True,
                    own_growth_mib: float = 0.0):
    """Predict a release from before it: the layout after it, the host's drop, its curve, and an
    interval of named terms. Returns (Prediction, Released).
    own_growth_mib: how much QEMU's own memory (outside guest RAM and TCG's cache) grew from the
    previous release (or the run's start) to this one, measured before it."""
    from harness.model.predict import Prediction, Term
    from harness.model.reporting import ReportingParams
    params = params or ReportingParams()
    if noise_mib < 0 or own_growth_mib < 0:
        raise ModelError("noise_mib and own_growth_mib must be >= 0")
    rel = run_release(pre, tick_layouts=True)
    layout_free = free_layout(rel.machine)
    events, passes = _drop_of(rel, pre, host, params, guest_reports)
    thr = params.order if params.order is not None else pre.order
    total = sum(m for _, m, _ in events)
    curve = _cumulative(events)
    rcurve, rcum = [(0.0, 0.0)], 0.0
    per_zone: dict = {}
    per_order: dict = {}
    for t, m, r in events:
        rcum += r.pages / 256
        rcurve.append((t, rcum))
        pz = per_zone.setdefault(r.zone, {"reported_mib": 0.0, "dropped_mib": 0.0, "reports": 0})
        pz["reported_mib"] += r.pages / 256
        pz["dropped_mib"] += m
        pz["reports"] += 1
        for _, o in r.blocks:
            po = per_order.setdefault(o, {"reported_blocks": 0, "reported_mib": 0.0})
            po["reported_blocks"] += 1
            po["reported_mib"] += (1 << o) / 256
    moves = not host.discard_inhibited and host.poison_val == 0 and not (
        host.backend == "hugetlbfs" and host.metric == "rss")
    block_mib = (1 << thr) / 256
    # 6.12: the passes with none of the blocks the decay ticks form after the release (they come
    # 1-4 s after it, at ticks the passes' schedule does not place): each plateau lies between
    # this curve and the one with them all at the release
    curve_before_decay = None
    if rel.before_decay is not None:
        ev2, _ = _drop_of(dataclasses.replace(rel, machine=rel.before_decay), pre, host, params, guest_reports)
        curve_before_decay = _cumulative(ev2)

    variant_t90: list[float] = []

    def drop_with_residue(k: int) -> float:
        return drop_of_variant(run_release(pre, residue=k))

    def drop_of_variant(variant: Released) -> float:
        ev = _drop_of(variant, pre, host, params, guest_reports)[0]
        got = sum(m for _, m, _ in ev)
        # the same run's time to 90% of its own total: a residue at either end moves blocks
        # between passes, so the measured time to 90% may land a pass off the model's
        cum = 0.0
        for t, m, _ in ev:
            cum += m
            if got > 0 and cum >= 0.9 * got - 1e-9:
                variant_t90.append(t)
                break
        return got

    terms = [Term("rss_noise", "RSS noise of this run's idle guest, measured before the release (input)",
                  -noise_mib, noise_mib)]
    # QEMU's heap creeps up while the guest works (0.2 MiB over a hugetlbfs release, whose RAM is
    # outside Rss: 0.5 MiB over that run): at most what it grew from the previous release (or
    # the run's start) to this one, a longer and busier stretch than the phase. The RAM mapping
    # has none of it.
    if host.metric == "rss":
        terms.append(Term("qemu_own_growth", f"QEMU's own memory (outside guest RAM and TCG's cache) grew "
                          f"{own_growth_mib:.1f} MiB from the previous release (or the run's start) to this one, "
                          "or over the previous release's phase "
                          "(measured before it)",
                          -own_growth_mib, 0.0))
    # Which of the release's newest pages stay on the per-cpu lists depends on where the last
    # drain fell, which /proc cannot pin down (free_factor, the mmu_gather's own batch pages,
    # pages of unknown list already there). After the last add the count is below high, plus
    # a THP's overshoot, and pages of other lists the drains did not reach share that count
    # (the model's, less one largest drain): the residue is 0 .. that many of the newest
    # pages. The term is the model run with each end.
    cpu = pre.cpu if pre.cpu is not None else 0
    # Each list the release's pages reach ends below its own high (a release over two zones
    # leaves up to both: a 3 GiB run's lists held 9913 pages, over one list's high + a THP).
    reached = {rel.machine.zone_of(r.pfn).key for r in rel.freed.runs}
    highs = [(zs.pcp(cpu).high if zs.pcp(cpu) else 0) for zs in pre.zones if zs.key in reached]
    if rel.residue_drains:                  # 6.12: decay leaves at most high_min
        nodes = len({zs.node for zs in pre.zones})
        highs = [zs.high_min(nodes) for zs in pre.zones if zs.key in reached]
    max_drain = max((zs.pcp(cpu).batch << PCP_BATCH_SCALE_MAX for zs in pre.zones if zs.pcp(cpu)), default=0)
    k_hi = sum(h + (1 << rel.spec.pageblock_order) - 1 for h in highs if h > 0) \
        - max(0, rel.elsewhere_left - max_drain)
    variants: list[Released] = []           # the pcp_residue term's runs beside the model's own
    k_lo = 0                                # fewest of the release's pages left on the lists
    settled = settled_release(pre, rel)
    # the capture walked every list of the release's CPU
    walked = bool(pre.pcp_lists) and all(pre.pcp_contents(zs.key, cpu) is not None for zs in pre.zones if zs.pcp(cpu))
    # a drop_caches on 6.1 drains its CPU's list of the highest zone whole right after it
    # (Released.drained_after): where the capture walked its lists, the model's own run gives
    # back every page at its pfn. Only where no other list of that CPU can drain whole too
    # (free_high_lists), and where slabinfo said what the drop's own slabs can free (the
    # slack this takes away covered them)
    top = max((zs for zs in pre.zones if zs.pcp(cpu) and zs.pcp(cpu).high > 0), key=lambda zs: zs.start, default=None)
    walked_drained = walked and rel.drained_after and pre.xarray_slab_pages is not None \
        and top is not None and set(rel.free_high_lists) <= {top.key}
    if settled:
        # Every drain the model's own: free_factor 0 at the start (the workload's allocations
        # halved it), nothing of ours on the release's CPU, and the workload's faults right
        # after the unmap leave no free_high drain possible (6.1 free_factor 0, 6.12 free_count
        # under batch; 6.12's decay after it is the model's too).
        # Left open: the count when the release begins, by one refill of the list the
        # mmu_gather's batch pages come from (rmqueue_bulk: batch pages) and one batch for the
        # release's own command (its pipe pages), and whether the touch left a THP on the list
        # (it refills two at a time). The term is the model run with each. A THP the capture
        # did not see (flagless_thps empty) is left out: a THP on the list is a flagless
        # aligned block, and in the stored runs whose capture saw none the touch took an even
        # number of THPs (6.12 maps it aligned: 128 and 512) or one was on the list before it
        # (an integrity cycle's 255); where it saw one, an odd number (6.1's unaligned 127, 511,
        # 767). (A restored 6.12 release that only the run with one kept within was a decay step
        # inside the release: decay_step_at below, to the page.)
        b = max((zs.pcp(cpu).batch for zs in pre.zones if zs.pcp(cpu)), default=0)
        # where the capture walked every list of the release's CPU (walked), what they held is
        # no choice: the THP parity, the THPs seen and where the pages of unknown list sit drop out
        # (the count stays open by two batches either way even with the lists walked and read at
        # the unmap: run without them, two fresh-clone releases read the guest's free memory 10
        # and 66 pages over the model's, the drop within)
        axes: list[list[dict]] = [[{}, {"count_offset": -2 * b}, {"count_offset": 2 * b}]]
        other_parity = not walked and (bool(rel.thps_before) or pre.flagless_thps != ())
        if other_parity:
            axes.append([{}, {"thp_left": not rel.thps_before}])
        # more THPs from before on a list than the one the model puts there: every one the
        # capture saw in the zone, as far as the list's count holds them (PcpList)
        seen_more = not walked and pre.pcp_taken and any(
            sum(1 for h in pre.flagless_thps or () if zs.start <= h < zs.end) > 1
            and zs.pcp(cpu) and zs.pcp(cpu).count >= 2 << rel.spec.pageblock_order for zs in pre.zones)
        if seen_more:
            axes.append([{}, {"thps_seen_all": True}])
        # and what the model cannot time: a free_high on a list the faults did not reach, and
        # vmstat's batch from other nodes' lists
        if rel.free_high_lists or rel.remote_lists:
            axes.append([{}, {"free_high_whole": True, "remote_batch": True}])
        # 6.12: vmstat's once-a-second decay step falling inside the release: at its start
        # (after the lists' read: the later frees flush at the lowered high) or before its last
        # order-0 free (PcpList.decay_inside)
        # (none where e2emem's sync saw vmstat_update run and the unmap ended within 700 ms of
        # it: the next run is at least 750 ms away, PreRecord.sync_age_ms)
        decay_inside = rel.spec.version >= (6, 2) and not pre.decay_synced
        if decay_inside:
            axes.append([{}, {"decay_step_at": "start"}, {"decay_step_at": "end"}])
        # the faults after it where the model's order-0 list is empty: pages of unknown list
        # (the model's run) or a refill from the buddy lists, which can split a block
        if rel.faults_took_unknown:
            axes.append([{}, {"fault_refill": True}])
        # the pages of unknown list drained before the THP list by the flushes an order-0 free
        # sets off (PcpList._bulk): how many pages from before can go back, what they can
        # complete (pcp_unknown_pages and the free-memory check), and which THPs stay. In a
        # traced integrity run those were the model's (259 of 2130 such pages came before the
        # THPs; this run, taking all, keeps 4 more); a hinted migration's destination release
        # kept 2 THPs more than the model's run (its layout right after: 124416 and 124928 on
        # the list, the real residue ~3015 pages against 1986), this run 3 (3522)
        if rel.elsewhere_drained_late:
            axes.append([{}, {"elsewhere_before_thp": True}])
        # where the lists were not read whole, their pages of unknown position on the lists
        # drained last instead of first (the unmovable order-0 list's, from the order-0 movable
        # one on: traced after a punch, 783 of them stayed while the release's pages went)
        if not pre.pcp_taken and not walked:
            axes.append([{}, {"unknown_last": True}])
        # Each is open on its own, so the term runs every combination of the choices above, not
        # one at a time: their parts add up (a 3 GiB release: the other THP parity +2 MiB, its
        # DMA32 list drained whole +20, both +22; a restored 6.12 one: its count's high end
        # -4, the faults' refill -2, both -6).
        # (with no THP left on the list, every seen one on it is the same run: left out)
        combos = [{k: v for d in combo for k, v in d.items()} for combo in itertools.product(*axes) if any(combo)]
        variants = [run_release(pre, **kw) for kw in combos
                    if not (kw.get("thps_seen_all") and kw.get("thp_left") is False)]
        ds = [drop_of_variant(v) - total for v in variants] if moves else [0.0]
        res_pages = sorted({sum(n for _, n in v.residue) for v in (rel, *variants)})
        k_lo, k_hi = res_pages[0], res_pages[-1]
        untimed = "".join([f", {'/'.join(rel.free_high_lists)} drained whole (free_high)" if rel.free_high_lists else "",
                           f", a batch from {'/'.join(rel.remote_lists)} (vmstat)" if rel.remote_lists else "",
                           ", a decay step inside it" if decay_inside else "",
                           ", the faults' refill" if rel.faults_took_unknown else "",
                           ", the pages of unknown list drained ahead of the THPs" if rel.elsewhere_drained_late else "",
                           ", the pages of unknown position drained last" if not (pre.pcp_taken or walked) else "",
                           ", every THP-sized flagless block seen on the lists" if seen_more else ""])
        parity = (", the lists as the capture walked them" if walked else ", the other THP parity" if other_parity
                  else ", no THP left on the list (none seen)")
        terms.append(Term("pcp_residue", f"the release's pages left on CPU {cpu}'s per-cpu lists, with its "
                          f"count {2 * b} pages either way{parity}{untimed}: {res_pages[0]}-{k_hi} "
                          f"pages (the model's {sum(n for _, n in rel.residue)}): the model run with each",
                          min([0.0, *ds]), max([0.0, *ds])))
    elif rel.drained_after:
        # every page of the release reached the buddy lists (run_release): none is left to place
        k_hi = 0
        terms.append(Term("pcp_residue", f"none of the release's pages left on CPU {cpu}'s per-cpu lists: a "
                          "free_high drain after its last free (6.1: the page cache's xarray nodes freed "
                          "through RCU, order-1 slab pages) gives back the lists whole", 0.0, 0.0))
    else:
        d_hi = (drop_with_residue(0) - total) if moves else 0.0
        d_lo = (drop_with_residue(k_hi) - total) if moves else 0.0
        terms.append(Term("pcp_residue", f"the release's newest pages left on CPU {cpu}'s per-cpu lists: 0 to "
                          f"{k_hi} pages (high + a THP) instead of the model's {sum(n for _, n in rel.residue)}: "
                          "the model run with each", min(0.0, d_lo, d_hi), max(0.0, d_lo, d_hi)))
    if pre.cpu is None:
        raise ModelError("the release's CPU is not known: pin the workload (e2emem `cpu N`)")
    # Drained pages of unknown position can complete blocks only where they are the missing
    # pieces: the aligned 2^order regions closest to whole (fewest pages not free after the
    # release), as many as those pages can fill, each giving back its held free pages and
    # the pieces themselves.
    from harness.model.discard import ResidentMap
    res = ResidentMap.from_bytes(pre.held, rel.machine.end_pfn)
    regions: dict = {}
    for z in rel.machine.zones:
        for pfn, o, _, _ in z.free_blocks():
            if o < thr:
                r = regions.setdefault(pfn >> thr, [0, 0])
                r[0] += 1 << o
                r[1] += res.count(pfn, 1 << o)
    # pages known not to be free: the release's own residue (the pcp_residue term's business)
    # and the workload's pages it keeps mapped
    gone = {p for r in pre.unmapped for p in range(r.pfn, r.pfn + r.pages)}
    known = {p >> thr for r in pre.mapped for p in range(r.pfn, r.pfn + r.pages) if p not in gone}
    for pfn, n in [(r.pfn, r.pages) for r in pre.kept]:
        known.update(range(pfn >> thr, ((pfn + n - 1) >> thr) + 1))
    kept_known = set(known)
    residue_in: dict = {}                   # region -> the release's pages the model left on the lists
    for pfn, n in rel.residue:
        for p in range(pfn, pfn + n):
            residue_in[p >> thr] = residue_in.get(p >> thr, 0) + 1
    known.update(residue_in)
    on_lists = sum(zs.pcp(cpu).count for zs in pre.zones if zs.pcp(cpu))
    open_regions = [(reg, r) for reg, r in regions.items() if reg not in known]
    if thr > rel.spec.max_order:              # no block of that order exists: nothing to complete
        open_regions = []
    # (pages, held pages it gives back: the region's, from the pagemap, region) per open
    # region, closest to whole first
    size = 1 << thr
    end_pfn = rel.machine.end_pfn
    held_in = lambda reg: res.count(reg * size, min(size, end_pfn - reg * size))  # noqa: E731
    fills = sorted(((size - r[0], held_in(reg), reg) for reg, r in open_regions if r[0] < size), key=closest_first)
    # whole yet not merged regions are merge barriers, not missing pages: left out above
    # A page on a per-cpu list carries no kpageflags flag (e2epfn's class P), so a drain of
    # pages from before the release can complete only a region whose every missing page was
    # flagless before it (the workload's own pages there are the release's business, others
    # stay allocated); guest frees can complete any (the guest_frees term). The unmap's PTE
    # tables join those drains (free_unknown), so a page table (class T) can be a missing page
    # too. Traced (6.12 x 10.0, kmem/mm_page_pcpu_drain): a region of 442 such pages and 70
    # flagless ones drained whole at the second decay tick.
    unknown_fills = fills
    pieces = pre.unknown_piece_runs
    if pieces is not None:
        mask = bytearray(rel.machine.end_pfn)
        for start, n in pieces:
            mask[start:start + n] = b"\x01" * len(mask[start:start + n])
        in_free: dict = {}
        for z in rel.machine.zones:
            for pfn, o, _, _ in z.free_blocks():
                if o < thr:
                    in_free[pfn >> thr] = in_free.get(pfn >> thr, 0) + mask[pfn:pfn + (1 << o)].count(1)
        unknown_fills = [f for f in fills
                         if f[0] == mask[f[2] * size:(f[2] + 1) * size].count(1) - in_free.get(f[2], 0)]
        # and regions with no free page at all whose every page was flagless (or a page table)
        unknown_fills += [(size, held_in(reg), reg) for reg in range(len(mask) // size)
                          if reg not in regions and reg not in known
                          and mask[reg * size:(reg + 1) * size].count(1) == size]
        unknown_fills.sort(key=closest_first)
        # Where the drains are not the model's own (not settled), a region can also lack both:
        # flagless pages and the release's residue the kernel drained where the model did not
        # (fragment's free-rest: the punch's pages still on the lists beside the release's own,
        # 6 order-10 blocks the model left incomplete). Such a region counts as one the
        # flagless pages complete, its residue pages coming with the pcp_residue term's other end.
        mixed = [(size - r[0] - residue_in[reg], held_in(reg), reg) for reg, r in regions.items()
                 if reg in residue_in and reg not in kept_known and r[0] < size
                 and size - r[0] == mask[reg * size:(reg + 1) * size].count(1) - in_free.get(reg, 0)
                 + residue_in[reg]]
        unknown_fills_mixed = sorted(unknown_fills + mixed, key=closest_first)
    else:
        unknown_fills_mixed = unknown_fills

    tables = pre.kind == "munmap" and bool(pre.page_table_runs)
    where = (" whose missing pages were all flagless" + (" or page tables" if tables else "") + " before it"
             if pieces is not None else "")

    def fill(pages: float, candidates, taken=frozenset()) -> tuple[float, set, float]:
        """(held pages given back, the regions completed, pages left) completing candidates
        not yet taken, closest to whole first, with `pages`."""
        gain, done = 0, set()
        for missing, got, reg in candidates:
            if reg in taken:
                continue
            if missing > pages:
                break
            pages -= missing
            gain += got
            done.add(reg)
        return gain, done, pages

    if settled:
        # a settled release gives back what its runs drained: whole THPs from before, a block
        # each (its pages, if the host holds them), and order-0 pages that can only fill holes
        pb = rel.spec.pageblock_order
        best = (-1, set(), 0, 0)
        unknown_blocks = 0                  # the most blocks any run's drains can form
        for v in (rel, *variants):
            thp_pages = v.unknown_thps_drained << pb
            g, u, _ = fill(v.unknown_drained - thp_pages, unknown_fills)
            unknown_blocks = max(unknown_blocks, len(u) + v.unknown_thps_drained)
            if g + thp_pages > best[0]:
                best = (g + thp_pages, u, v.unknown_drained, thp_pages)
        gain, used, unk, thp_pages = best
        thp_blocks = thp_pages >> pb
        # the free memory's bound: the most any run drained, whichever completes most blocks
        drained_most = max(v.unknown_drained for v in (rel, *variants))
        what = (f"up to {unk} per-cpu pages from before the release (position unknown) go back to the buddy lists "
                f"during it in the model's runs ({thp_pages} of them whole THPs: a block each, held or not) and "
                f"complete the {block_mib:g} MiB regions closest to whole{where}")
    else:
        # a free_high drain (Released.free_high_drain) gives every one of them back; none is of
        # unknown position where the model drained the walked lists itself (walked_drained)
        unk = 0 if walked_drained else on_lists if rel.free_high_drain or rel.drained_after \
            else min(rel.unknown_drained + max_drain, on_lists)
        gain, used, _ = fill(unk, unknown_fills_mixed)
        drained_most = unk
        thp_blocks = 0
        unknown_blocks = len(used)
        what = (f"none: the model's own run drains CPU {cpu}'s lists whole after the drop, every page where "
                "the capture walked it" if walked_drained else
                f"up to {unk} per-cpu pages from before the release (position "
                f"unknown) can go back to the buddy lists "
                f"{'(all: a free_high drain, 6.1) ' if rel.free_high_drain else 'during it '}"
                f"and complete the {block_mib:g} MiB regions closest to whole{where}")
    unk_hi = gain / 256 if moves else 0.0
    terms.append(Term("pcp_unknown_pages", what, 0.0, unk_hi))
    window = (passes[-1].t_end if passes else 0.0) + params.delay_s
    alloc_p = activity.alloc_pages_per_s * window + activity.ours()
    # Where the release is settled (the model owns its CPU's drains), our commands' frees can
    # complete blocks only if their own CPU's list flushes. Where it is not, the term is left
    # whole: fragment's free-rest read 992-998 against 982 with up to 8 MiB of it, the punch's
    # pages on the lists not being placed (Released: pcp_taken false after a punch). A 6.1
    # drop_caches whose CPU's lists were walked is the model's too (walked_drained); what its
    # guest free memory read over the model's beyond our frees (1.0-1.31 MiB) is the drop's own
    # xarray-node slabs (measured: radix_tree_node 173 -> 34 slabs of 2 pages, 278 pages, with
    # nr_slab_reclaimable 278 down), counted below.
    ours_stay = (settled or walked_drained) and ours_frees_stay_on_lists(pre, rel.spec.version, activity.ours())
    remote = ours_remote_batches(pre) if ours_stay else 0
    # 6.12: our commands' frees stay on their CPU's lists but for one flush of its oldest pages
    # (ours_flush_612), which complete regions as pcp_flush's do. Seven of eight stored 6.12
    # runs had older captures, where the unmap's page tables read as pages in use and a region
    # of them completed by the decay's drains was inside only through our frees counted here.
    ours_flush = None if ours_stay or not settled else \
        ours_flush_612(pre, rel.spec.version, rel.spec.pageblock_order, activity.ours())
    # a drop_caches frees the page cache's xarray nodes too, whose emptied slabs go back to the
    # buddy lists (RCU, then the drop CPU's free_high drain): at most every page those slabs
    # held before it, at positions the capture does not tell apart (class A)
    slab = (pre.xarray_slab_pages or 0) if pre.kind == "drop_caches" else 0
    # (those are freed on the drop's CPU: they take no other CPU's list to its high)
    free_others = activity.free_pages_per_s * window + ours_freed(activity.ours(), ours_stay, remote, ours_flush)
    free_p = free_others + slab

    def count(pages: float) -> int:
        return -(-int(pages) // (1 << thr)) if pages > 0 else 0

    def blocks(pages: float) -> float:
        return count(pages) * block_mib

    # an allocation can also fault unbacked guest memory back in on the host, a host THP
    # (2 MiB) at a time, whether or not anything is reported
    can_move = not (host.backend == "hugetlbfs" and host.metric == "rss")
    act_lo = blocks(alloc_p) if can_move else 0.0
    # A freed page completes a block where it is the missing piece, as a drained per-cpu page
    # does: the regions closest to whole after those the pcp pages filled. Measured (fragment,
    # 6.1, restored): 84 regions lacked 2 pages each at the capture, transient allocations of
    # the guest's and ours, and the kernel completed 64 of them during the release. The pages
    # left over can free whole blocks of their own (a block per 2^order pages).
    completed, done, rest = fill(free_p, fills, used)
    whole = int(rest) >> thr
    act_hi = (completed / 256 + whole * block_mib) if moves else 0.0
    # another CPU's list that those frees can take to high flushes its oldest pages, from
    # before the release, which can complete regions as a drain of the release CPU's does
    pcps = other_lists(pre, rel.spec.version, rel.spec.pageblock_order,
                       ours_list(pre) if ours_flush is not None else None)
    others = tuple((p.count, p.high, most) for _, p, most in pcps)
    flush, margin = (0, None) if ours_stay else flush_beyond_frees(others, free_others)
    flush += ours_flush or 0
    flush_gain, flushed, _ = fill(flush, unknown_fills, used | done)
    # where the capture walked the flushed lists, the pages a flush takes are known: its oldest
    flushes = [(pre.pcp_contents(zs.key, p.cpu), most) for zs, p, most in pcps
               if not ours_stay and flush_reached(p.count, p.high, most, free_others)]
    if ours_flush:
        flushes.append((pre.pcp_contents(ours_zone(pre).key, pre.ours_cpu), ours_flush))
    walked_gain = walked_flush_gain(flushes, {reg: r[0] for reg, r in regions.items()}, size, held_in,
                                    used | done) if flushes and pre.pcp_lists and thr <= rel.spec.max_order else None
    if walked_gain is not None:
        flush_gain, flushed = walked_gain
    terms.append(Term("guest_allocations", f"guest allocations over the {window:.1f} s window (idle rate "
                      f"{activity.alloc_pages_per_s:.0f} pages/s, {activity.captures_in_window} capture(s) and "
                      f"{activity.commands_in_window} other command(s), "
                      f"measured before the release): each can split an unreported block or fault unbacked "
                      f"memory in on the host", -act_lo, 0.0))
    ours_what = (f"not our commands': their {activity.ours():.0f} pages stay on CPU {pre.ours_cpu}'s lists, "
                 "under its high" + (f"; {remote} from its other nodes' lists (vmstat)" if remote else "")
                 if ours_stay else f"not our commands': their {activity.ours():.0f} pages stay on CPU "
                 f"{pre.ours_cpu}'s lists, one flush of its oldest aside (pcp_flush)" if ours_flush is not None
                 else "and our commands'")
    slab_what = f"; the drop's xarray-node slabs, up to {slab} pages (slabinfo before it)" if slab else ""
    terms.append(Term("guest_frees", f"guest frees over the window (idle rate {activity.free_pages_per_s:.0f} "
                      f"pages/s, {ours_what}{slab_what}): each can complete a resident block", 0.0, act_hi))
    flush_what = "no other CPU's list within reach of its high" if margin is None else \
        (f"another CPU's list {margin} pages under its high: its flush gives back pages from before the "
         "release beyond the frees")
    if ours_flush is not None:
        flush_what = (f"one flush of CPU {pre.ours_cpu}'s list, where our commands free (free_high or at high, "
                      f"6.12): {ours_flush} of its oldest pages, from before the release; "
                      + ("no other list within reach of its high" if margin is None else flush_what))
    completes = (f"the lists' oldest as the capture walked them, from the list index that gives most, which "
                 f"complete {len(flushed)} {block_mib:g} MiB region(s)" if walked_gain is not None else
                 f"which complete the {block_mib:g} MiB regions closest to whole{where}")
    terms.append(Term("pcp_flush", f"{flush_what}" + (f": {flush} pages, {completes}" if flush else ""),
                      0.0, flush_gain / 256 if moves else 0.0))
    lo = total + sum(t.lo_mib for t in terms)
    hi = total + sum(t.hi_mib for t in terms)
    for v in per_zone.values():
        for k in list(v):
            if isinstance(v[k], float):
                v[k] = round(v[k], 2)
    pass_json = [{"t_start": round(p.t_start, 3), "t_end": round(p.t_end, 3), "reports": len(p.reports),
                  "reported_mib": round(p.pages / 256, 2), "again": p.again, "gated": list(p.gated),
                  "spare_blocks": spare_blocks(p, params.capacity)}
                 for p in passes]
    why = [f"pass {i} at {p.t_start:.2f} s: {p.pages / 256:.0f} MiB in {len(p.reports)} report(s)"
           f"{'; budget spent, another pass' if p.again else ''}" for i, p in enumerate(passes, 1)]
    inputs = {"kernel": pre.kernel, "order": thr, "cpu": pre.cpu, "freed_pages": rel.freed.pages,
              "deferred_thp": rel.freed.deferred_thp, "residue_pages": sum(n for _, n in rel.residue),
              "residue_drains": rel.residue_drains, "free_high_drain": rel.free_high_drain,
              # the free-memory check's: the most pages from before any run gives back
              "unknown_drained": drained_most,
              # blocks the per-cpu terms can form (pcp_unknown_pages, pcp_flush), held or not, at
              # times the model does not know (the curve's slack). guest_frees' are left out: on
              # 6.12 captures before e2epfn 3 its high side is mostly our commands' frees, counted
              # for a free_high drain twelve traced runs never showed, and no plateau has read
              # under by them (from e2epfn 3 that flush is pcp_flush's, and counted here).
              "formed_blocks": (len(used) + thp_blocks + len(flushed)) if moves else 0,
              # how many blocks >= the order each term can add to or take from the layout, held
              # or not (layout_differences): what its pages can complete, or split
              "layout_blocks": {"pcp_unknown_pages": unknown_blocks, "pcp_flush": len(flushed),
                                "guest_frees": len(done) + whole, "guest_allocations": count(alloc_p)},
              "model_unknown_drained": rel.unknown_drained, "residue_max_pages": k_hi,
              "residue_min_pages": k_lo, "ours_frees_stay": ours_stay, "ours_remote_pages": remote,
              "slab_pages": slab,
              "ours_flush_pages": ours_flush,
              # the other CPUs' lists the window's frees can flush (other_lists), for the
              # free-memory check as for pcp_flush here
              "other_lists": [list(x) for x in others],
              "t90_residue_ends_s": [round(t, 3) for t in variant_t90], "read_at_s": pre.read_at_s,
              "curve_before_decay": None if curve_before_decay is None else
              [[round(t, 3), round(c, 2)] for t, c in curve_before_decay],
              "noise_mib": noise_mib, "own_growth_mib": own_growth_mib, "backend": host.backend, "metric": host.metric,
              "params": {"capacity": params.capacity, "delay_s": params.delay_s,
                         "budget_divisor": params.budget_divisor, "zone_gate": params.zone_gate,
                         "order": params.order}, "layout": "pre-release"}
    p = Prediction(expected_mib=total, lo_mib=lo, hi_mib=hi, metric=host.metric, terms=tuple(terms),
                   curve=tuple(curve), reported_curve=tuple(rcurve), total_mib=total, rss_mib=total,
                   mapping_mib=total, per_zone=per_zone, per_order=dict(sorted(per_order.items())),
                   passes=tuple(pass_json), why=tuple(why), inputs=inputs)
    return p, rel, layout_free


def _cumulative(events) -> list[tuple[float, float]]:
    """The drop's step curve from _drop_of's reports: (0, 0), then (t, MiB so far) at each."""
    out, cum = [(0.0, 0.0)], 0.0
    for t, m, _ in events:
        cum += m
        out.append((t, cum))
    return out


def compare_layout_blocks(predicted: dict, zone_labels: dict, real, min_order: int) -> LayoutCheck:
    """predicted: zone key -> [(pfn, order, mt)] (the model's free blocks right after the release);
    real: (head, order, zone label) read from the guest after it."""
    pred = {(pfn, o): zone_labels[k] for k, bl in predicted.items() for pfn, o, _ in bl if o >= min_order}
    got = {(h, o): zl for h, o, zl in real if o >= min_order}
    both = pred.keys() & got.keys()
    table: dict = {}
    for (h, o), zl in pred.items():
        table.setdefault(f"{zl}/{o}", [0, 0, 0])[0] += 1
    for (h, o), zl in got.items():
        t = table.setdefault(f"{zl}/{o}", [0, 0, 0])
        t[1] += 1
        if (h, o) in both:
            t[2] += 1
    return LayoutCheck(min_order, len(pred), len(got), len(both), dict(sorted(table.items())),
                       tuple(sorted(pred.keys() - both)), tuple(sorted(got.keys() - both)))


def layout_differences(lay: LayoutCheck, predicted: dict, real: list, pre: PreRelease, residue_min: int,
                       residue_max: int, settled: bool = True) -> tuple[dict, tuple[tuple[int, int], ...]]:
    """Pure: each block only one side has, put down to the term that allows it, and the blocks
    none does. predicted: zone key -> [(pfn, order, mt)], every free block of the model's layout
    compared; real: (head, order) of every free block the guest had. A real block the model
    lacks is made of the model's free pages and missing ones, and put down to one term: others
    than those below (guest_frees), else the release's own pages the model kept on the lists
    (pcp_residue), else pages flagless (or page tables an unmap frees) before it
    (pcp_unknown_pages); one whose pages the model has free in a larger
    block has nothing missing and no term. A predicted block the guest lacks, not merged into a
    larger real one: the release's pages there the guest does not have free are still on a
    list (pcp_residue) or were taken by an allocation (the faults after the release, a refill
    of a batch: `taken`), else it was split by an allocation (guest_allocations). The
    release's pages not free in the layout (the model's residue there, less the workload's
    faults after it), less those completing real blocks and plus those kept, must lie within
    pcp_residue's [residue_min, residue_max], which bounds it once the drains are over; where the layout is not (settled false: 6.12 before its last decay tick)
    the residue can still fall, and only the lower end holds. Where it does not, the blocks
    that moved it that way are not explained."""
    if not lay.only_real and not lay.only_predicted:
        return {}, ()

    def spans(blocks):
        out = sorted((h, h + (1 << o)) for h, o in blocks)
        return out, [a for a, _ in out]

    def free_in(sp, lo: int, hi: int) -> set:
        blocks, starts = sp
        i = max(0, bisect.bisect_right(starts, lo) - 1)
        out: set = set()
        while i < len(blocks) and blocks[i][0] < hi:
            a, b = blocks[i]
            out.update(range(max(a, lo), min(b, hi)))
            i += 1
        return out

    def pages_in(runs, lo: int, hi: int) -> set:
        return {p for st, n in runs if st < hi and st + n > lo for p in range(max(st, lo), min(st + n, hi))}
    model = spans((pfn, o) for bl in predicted.values() for pfn, o, _ in bl)
    guest = spans(real)
    release = [(r.pfn, r.pages) for r in pre.unmapped]
    mask = bytearray(max([b for _, b in model[0]] + [r.pfn + r.pages for r in pre.unmapped] + [0]))
    for st, n in release:
        mask[st:st + n] = b"\x01" * n
    for a, b in model[0]:
        mask[a:b] = bytes(b - a)
    # the release's pages not free in the model's layout, less what its faults after took
    residue = max(0, mask.count(1) - pre.faults_after)
    # what an allocation can have taken of a block instead: the faults after the release and
    # one refill of the release CPU's list (rmqueue_bulk: a batch)
    taken = pre.faults_after + max((zs.pcp(pre.cpu).batch for zs in pre.zones if zs.pcp(pre.cpu)), default=0)
    before = pre.unknown_piece_runs or ()
    terms: dict = {}
    lowered: list = []                      # real blocks of the release's pages: the residue lower
    raised: list = []                       # predicted blocks kept whole on a list: higher
    residue_lo = residue_hi = residue
    for h, o in lay.only_real:
        missing = set(range(h, h + (1 << o))) - free_in(model, h, h + (1 << o))
        mine = missing & pages_in(release, h, h + (1 << o))
        flagless = (missing - mine) & pages_in(before, h, h + (1 << o))
        # one term per block: only a free can give pages that were neither the release's nor
        # flagless; else the release's own (its residue is bounded below); else a drain's
        others = missing - mine - flagless
        n = "guest_frees" if others else "pcp_residue" if mine else "pcp_unknown_pages" if flagless else None
        if n:
            terms[n] = terms.get(n, 0) + 1
        residue_lo -= len(mine)
        residue_hi -= len(mine)
        if mine:
            lowered.append((h, o))
    for h, o in lay.only_predicted:
        if any(rh <= h and h + (1 << o) <= rh + (1 << ro) for rh, ro in lay.only_real):
            continue                        # free in the guest too, merged into a larger block
        kept = pages_in(release, h, h + (1 << o)) - free_in(guest, h, h + (1 << o))
        if not kept:
            terms["guest_allocations"] = terms.get("guest_allocations", 0) + 1
            continue
        terms["pcp_residue"] = terms.get("pcp_residue", 0) + 1
        residue_lo += max(0, len(kept) - taken)
        residue_hi += len(kept)
        if len(kept) > taken:
            raised.append((h, o))
    unexplained = lowered if residue_hi < residue_min else raised if settled and residue_lo > residue_max else []
    return dict(sorted(terms.items())), tuple(sorted(unexplained))


def layout_beyond(differences: dict, allowed: dict, flagless_known: bool = True) -> tuple[str, ...]:
    """Pure: the terms that put down more blocks (layout_differences) than the model's inputs
    let them form or split (Prediction.inputs["layout_blocks"]). A block of pages flagless
    before the release can come back by a drain (pcp_unknown_pages, pcp_flush) or a guest
    free (a flagless page in use, freed): what the frees have left covers it. Without the
    flagless pages (captures before e2epfn 2) such a block is put down to guest_frees: the
    two are then counted together."""
    def got(name: str) -> int:
        return differences.get(name, 0)

    def can(name: str) -> int:
        return allowed.get(name, 0)
    out = []
    if flagless_known and got("guest_frees") > can("guest_frees"):
        out.append(f"guest_frees {got('guest_frees')} blocks, its frees complete at most {can('guest_frees')}")
    frees = got("guest_frees") if flagless_known else 0
    flagless = got("pcp_unknown_pages") + got("guest_frees") - frees
    most = can("pcp_unknown_pages") + can("pcp_flush") + max(0, can("guest_frees") - frees)
    if flagless > most:
        out.append(f"pcp_unknown_pages {flagless} blocks, drains and frees of pages flagless before the release "
                   f"complete at most {most}")
    if got("guest_allocations") > can("guest_allocations"):
        out.append(f"guest_allocations {got('guest_allocations')} blocks, its allocations split at most "
                   f"{can('guest_allocations')}")
    return tuple(out)
