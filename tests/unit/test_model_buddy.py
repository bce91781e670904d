"""Buddy allocator rules of harness/model/buddy.py, each against the kernel function it follows."""
from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.model.errors import ModelError
from harness.model.kernel import kernel_spec
from harness.model.buddy import (HIGHATOMIC, ISOLATE, MIGRATE_TYPES, MOVABLE, RECLAIMABLE, UNMOVABLE,
                                 Machine, Zone, aligned_blocks)

SPEC = kernel_spec("6.1")


def mkzone(pages=4096, start=0, free=True, **kw) -> Zone:
    z = Zone(node=0, name="Normal", start_pfn=start, spanned=pages, spec=SPEC, **kw)
    if free:
        z.free_range(start, pages, via_pcp=False)
    return z


def blocks(z: Zone) -> set:
    return {(p, o, m) for p, o, m, _ in z.free_blocks()}


def check_invariants(z: Zone, allocated: int | None = None) -> None:
    """What a buddy state must satisfy whatever happened to it."""
    seen = []
    for o in range(z.nr_orders):
        assert z.nr_free[o] == sum(len(z.lists[o][m]) for m in range(MIGRATE_TYPES))
        for m in range(MIGRATE_TYPES):
            assert z.unrep[o][m] == sum(1 for r in z.lists[o][m].values() if not r)
            for pfn in z.lists[o][m]:
                assert z.where[pfn] == (o, m)
                assert pfn % (1 << o) == 0 and z.contains(pfn, 1 << o)
                seen.append((pfn, pfn + (1 << o)))
    assert len(seen) == len(z.where)
    seen.sort()
    for (a0, a1), (b0, _) in zip(seen, seen[1:]):
        assert a1 <= b0, "free blocks overlap"
    # no two free buddies left unmerged (both mergeable, below the top order)
    for pfn, (o, m) in z.where.items():
        if o == z.max_order:
            continue
        w = z.where.get(pfn ^ (1 << o))
        if w and w[0] == o:
            assert o >= z.pb_order and not (z.pageblock_mt(pfn) < 3 and z.pageblock_mt(pfn ^ (1 << o)) < 3) \
                or ISOLATE in (z.pageblock_mt(pfn), z.pageblock_mt(pfn ^ (1 << o))), "unmerged buddies"
    free = sum(b - a for a, b in seen)
    isolated_type = sum(1 << o for p, (o, m) in z.where.items() if z.pageblock_mt(p) == ISOLATE)
    assert z.free_pages == free - isolated_type
    if allocated is not None:
        assert free + z.pcp_count + allocated == z.end - z.start, "pages not conserved"


# ---- mm/page_alloc.c __rmqueue_smallest / expand

def test_alloc_takes_the_head_of_the_smallest_order():
    z = mkzone(free=False)
    z.add_free_block(64, 6, MOVABLE)
    z.add_free_block(8, 3, MOVABLE)
    z.add_free_block(16, 3, MOVABLE, tail=False)     # head of the order-3 list
    assert z.rmqueue(0, MOVABLE) == 16
    assert z.rmqueue(3, MOVABLE) == 8                 # order 3 exact, no split
    assert z.rmqueue(4, MOVABLE) == 64                # next: split the order-6 block


def test_expand_leaves_unreported_remainders_at_the_heads():
    z = mkzone(free=False)
    z.add_free_block(2048, 10, MOVABLE, reported=True)
    z.add_free_block(1024, 9, MOVABLE, reported=True)   # an older order-9 block
    assert z.rmqueue(10, MOVABLE) == 2048
    z.add_free_block(2048, 10, MOVABLE, reported=True)
    assert z.rmqueue(0, MOVABLE) == 1024
    # remainders 1025/0, 1026/1, ... 1280/8 each on its list's head, unreported
    for o in range(9):
        head = next(iter(z.lists[o][MOVABLE]))
        assert head == 1024 + (1 << o) and not z.is_reported(head)
    assert z.is_reported(2048)                         # untouched block keeps its flag
    check_invariants(z)


# ---- __free_one_page / del_page_from_free_list

def test_free_merges_and_the_merge_clears_reported():
    z = mkzone(free=False)
    z.add_free_block(0, 9, MOVABLE, reported=True)
    assert z.free_block(512, 9) == (0, 10)
    assert z.where[0] == (10, MOVABLE) and not z.is_reported(0)
    check_invariants(z, allocated=4096 - 1024)


def test_no_merge_across_an_isolate_pageblock_at_pageblock_order():
    z = mkzone(free=False)
    z.set_pageblock_mt(512, ISOLATE)
    z.add_free_block(512, 9, ISOLATE)
    z.free_block(0, 9)
    assert z.where[0] == (9, MOVABLE) and z.where[512] == (9, ISOLATE)
    # below pageblock_order, pages of one pageblock merge whatever the list
    z2 = mkzone(free=False)
    z2.add_free_block(256, 8, UNMOVABLE)
    assert z2.free_block(0, 8) == (0, 9)


def test_no_merge_with_a_buddy_outside_the_zone():
    z = mkzone(pages=512, start=512, free=False)
    assert z.free_block(512, 9) == (512, 9)            # buddy 0..511 is not this zone's


def test_top_order_does_not_merge():
    z = mkzone(free=False)
    z.free_block(0, 10)
    assert z.free_block(1024, 10) == (1024, 10)


def test_buddy_merge_likely_puts_a_block_at_the_tail():
    z = mkzone(free=False)
    z.add_free_block(2, 1, MOVABLE)
    z.add_free_block(100, 0, MOVABLE)
    z.free_block(0, 0)        # buddy 1 is allocated, but 0..1's buddy 2..3 is free: tail
    assert list(z.lists[0][MOVABLE]) == [100, 0]
    z.free_block(8, 0)        # nothing free around: head
    assert next(iter(z.lists[0][MOVABLE])) == 8


def test_blocks_of_order_9_and_10_go_to_the_head():
    # 6.1 `order >= MAX_ORDER - 2`, 6.12 `order >= MAX_PAGE_ORDER - 1`: no tail placement
    z = mkzone(free=False)
    z.add_free_block(1024, 10, MOVABLE)
    z.free_block(0, 10)
    assert next(iter(z.lists[10][MOVABLE])) == 0


# ---- per-cpu lists: free_unref_page_commit / free_pcppages_bulk

def test_pcp_keeps_pages_until_high_then_drains_oldest_batches():
    z = mkzone(free=False, pcp_high=100, pcp_batch=10)
    assert z.free_range(0, 50) == -1 and z.free_pages == 0 and z.pcp_count == 50
    z.free_range(1000, 60)
    # count 110 >= high: drains of `batch` until below high: 20 oldest pages (0..19) reach the buddy
    assert z.pcp_count == 90 and z.free_pages == 20
    assert blocks(z) == {(0, 4, MOVABLE), (16, 2, MOVABLE)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(2, 64), st.integers(1, 16))
def test_pcp_bulk_drain_equals_page_by_page(runs, high, batch):
    bulk = mkzone(pages=1 << 14, free=False, pcp_high=high, pcp_batch=batch)
    single = mkzone(pages=1 << 14, free=False)
    q, pos = [], 0
    per = 1 if high < batch else max(1, min(batch, high - batch))   # nr_pcp_free
    for n in runs:
        bulk.free_range(pos, n)
        for p in range(pos, pos + n):       # the kernel: one page at a time
            q.append(p)
            if len(q) >= high:
                for _ in range(per):
                    single.free_block(q.pop(0), 0)
        pos += n + 1
    assert blocks(bulk) == blocks(single) and bulk.pcp_count == len(q)


# ---- bulk allocation == repeated __rmqueue(order 0)

def _random_zone(data) -> Zone:
    """A zone whose free memory is a random set of aligned pieces (the rest allocated)."""
    z = mkzone(pages=4096, free=False)
    pieces = data.draw(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 10)), max_size=40))
    for pfn, o in pieces:
        pfn -= pfn % (1 << o)
        if all(not (p < pfn + (1 << o) and pfn < p + (1 << q)) for p, (q, _) in z.where.items()):
            z.free_block(pfn, o)
    return z


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_bulk_alloc_equals_sequential_rmqueue(data):
    z = _random_zone(data)
    n = data.draw(st.integers(0, z.free_pages))
    seq = copy.deepcopy(z)
    got = z.alloc_pages(n, MOVABLE)
    pages = [seq.rmqueue(0, MOVABLE) for _ in range(n)]
    assert sorted(p + i for p, k in got for i in range(k)) == sorted(pages)
    assert blocks(z) == blocks(seq) and z.free_pages == seq.free_pages


def test_alloc_pages_takes_pcp_pages_first_lifo():
    z = mkzone(pcp_high=1000, pcp_batch=10, free=False)
    z.free_range(0, 2048, via_pcp=False)
    z.free_range(3000, 5)
    z.free_range(3100, 5)
    assert z.alloc_pages(7) == [(3100, 5), (3003, 2)]


def test_fallback_steals_a_whole_pageblock_for_large_blocks():
    # __rmqueue_fallback -> steal_suitable_fallback: order >= pageblock_order changes the pageblock
    z = mkzone(free=False)
    z.set_pageblock_mt(0, UNMOVABLE)
    z.set_pageblock_mt(512, UNMOVABLE)
    z.add_free_block(0, 10, UNMOVABLE)
    assert z.rmqueue(0, MOVABLE) == 0
    assert z.pageblock_mt(0) == MOVABLE and z.pageblock_mt(512) == MOVABLE


# ---- watermarks: __zone_watermark_ok

def test_watermark_counts_highatomic_reserve_and_lowmem_reserve():
    z = mkzone(pages=4096, nr_reserved_highatomic=100, lowmem_reserve=(0, 50))
    assert z.watermark_ok(4096 - 101)
    assert not z.watermark_ok(4096 - 100)
    assert not z.watermark_ok(4096 - 140, highest_zoneidx=1)
    z2 = mkzone(free=False)
    z2.add_free_block(0, 3, MOVABLE)
    assert z2.watermark_ok(0, order=3) and not z2.watermark_ok(0, order=4)


# ---- __isolate_free_page / __putback_isolated_page

def test_isolate_needs_min_watermark_plus_the_block():
    z = mkzone(pages=4096, wmark_min=4096 - 1024 - 10)
    head = next(iter(z.lists[10][MOVABLE]))
    assert z.isolate(head, 10)                     # 4096 - 3062 > 1024? free 4096 > min + 1024
    nxt = next(iter(z.lists[10][MOVABLE]))
    assert not z.isolate(nxt, 10)                  # 3072 <= 3062 + 1024
    assert z.free_pages == 3072


def test_isolate_of_order_8_and_up_turns_pageblocks_movable():
    z = mkzone(free=False)
    for p in (0, 512, 1024, 1536):
        z.set_pageblock_mt(p, UNMOVABLE)
    z.set_pageblock_mt(2048, HIGHATOMIC)
    z.add_free_block(0, 10, UNMOVABLE)
    z.add_free_block(1024, 8, UNMOVABLE)
    z.add_free_block(1536, 7, UNMOVABLE)
    z.add_free_block(2048, 9, HIGHATOMIC)
    z.add_free_block(3072, 10, MOVABLE)                 # keeps the zone above WMARK_MIN + 2^order
    for pfn, o in ((0, 10), (1024, 8), (1536, 7), (2048, 9)):
        assert z.isolate(pfn, o)
    assert [z.pageblock_mt(p) for p in (0, 512, 1024, 1536, 2048)] == \
        [MOVABLE, MOVABLE, MOVABLE, UNMOVABLE, HIGHATOMIC]


def test_putback_goes_to_the_tail_flagged_unless_it_merged():
    z = mkzone(free=False)
    z.add_free_block(0, 9, MOVABLE)
    z.add_free_block(2048, 9, MOVABLE)
    z.add_free_block(3072, 9, MOVABLE)
    assert z.isolate(0, 9)
    assert z.putback(0, 9, reported=True)
    assert list(z.lists[9][MOVABLE])[-1] == 0 and z.is_reported(0)
    # page_reporting_drain: a block whose buddy came free meanwhile merges and is not flagged
    assert z.isolate(2048, 9)
    z.free_block(2560, 9)
    assert not z.putback(2048, 9, reported=True)
    assert z.where[2048] == (10, MOVABLE) and not z.is_reported(2048)
    check_invariants(z, allocated=4096 - 512 - 1024 - 512)


# ---- invariants under random workloads

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["alloc", "free", "thp", "drain"]), st.integers(1, 700)),
                max_size=40), st.booleans())
def test_random_workload_keeps_invariants(ops, pcp):
    z = Zone(node=0, name="Normal", start_pfn=0, spanned=8192, spec=SPEC,
             pcp_high=200 if pcp else 0, pcp_batch=31 if pcp else 0)
    z.free_range(0, 8192, via_pcp=False)
    m = Machine([z], SPEC)
    held: list = []
    for op, n in ops:
        if op == "alloc" and n <= z.free_pages + z.pcp_count:
            held += z.alloc_pages(n, [MOVABLE, UNMOVABLE, RECLAIMABLE][n % 3])
        elif op == "thp":
            pfn = z.alloc_block(9)
            if pfn is not None:
                held.append((pfn, 512))
        elif op == "free" and held:
            run = held.pop(n % len(held))
            m.free_runs([run])
        elif op == "drain":
            z.drain_pcp()
        check_invariants(z, allocated=sum(k for _, k in held))


def test_aligned_blocks_cover_exactly():
    for pfn, n in ((0, 4096), (3, 1000), (1023, 2), (5, 0)):
        bl = list(aligned_blocks(pfn, n, 10))
        assert sum(1 << o for _, o in bl) == n
        assert all(p % (1 << o) == 0 for p, o in bl)


def test_machine_rejects_overlapping_zones_and_foreign_pfns():
    a = Zone(node=0, name="DMA32", start_pfn=0, spanned=4096, spec=SPEC)
    b = Zone(node=0, name="Normal", start_pfn=2048, spanned=4096, spec=SPEC)
    with pytest.raises(ModelError):
        Machine([a, b], SPEC)
    m = Machine([a], SPEC)
    with pytest.raises(ModelError):
        m.zone_of(5000)
