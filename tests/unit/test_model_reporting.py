"""Page reporting rules of harness/model/reporting.py against mm/page_reporting.c."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.model.buddy import Machine, Zone
from harness.model.discard import HostConfig, ResidentMap
from harness.model.kernel import effective_reporting_order, kernel_spec
from harness.model.reporting import ReportingParams, run_pass, run_until_idle
from tests.sim.synth import fresh_machine
from harness.model.buddy import CMA, HIGHATOMIC, ISOLATE, MOVABLE, UNMOVABLE
from harness.model.reporting import ACTIVE, IDLE, REQUESTED, Reporter
from tests.sim.trace import Free, Fragment, Register, Simulation, touch

SPEC = kernel_spec("6.1")
# rules other than the gates are tested with the gates off: the small zones here would trip them
P = ReportingParams(report_latency_s=0.0, zone_gate=False, isolation_gate=False)
GATED = ReportingParams(report_latency_s=0.0)


def machine_with(blocks, pages=1 << 20, **zkw) -> tuple[Machine, Zone]:
    """One Normal zone with the given (pfn, order, mt, reported) free blocks, in list order."""
    z = Zone(node=0, name="Normal", start_pfn=0, spanned=pages, spec=SPEC, **zkw)
    for pfn, order, mt, rep in blocks:
        if mt != MOVABLE:
            for p in range(pfn, pfn + (1 << order), 512):
                z.set_pageblock_mt(p, mt)
        z.add_free_block(pfn, order, mt, reported=rep)
    return Machine([z], SPEC), z


def top_blocks(n, start=0, reported=False, order=10, mt=MOVABLE):
    """n free blocks of `order`, never buddies of each other (every other slot below the top order)."""
    step = 1 << (order if order == SPEC.max_order else order + 1)
    return [(start + i * step, order, mt, reported) for i in range(n)]


def one_pass(m, thr=9, params=P):
    rep = Reporter(state=REQUESTED, next_run=0.0)
    return run_pass(m, rep, params, thr, 0.0), rep


# ---- the threshold order: page_reporting_register, page_order_update_notify

def test_61_overwrites_a_boot_time_order_at_registration():
    assert effective_reporting_order("6.1.0-28-amd64", boot_param=10) == 9
    assert effective_reporting_order("6.1", boot_param=10, sysfs_after_load=10) == 10
    assert effective_reporting_order("6.1", sysfs_after_load=11) == 11       # not range-checked in 6.1


def test_612_keeps_a_boot_time_order_and_range_checks():
    assert effective_reporting_order("6.12.95", boot_param=10) == 10
    assert effective_reporting_order("6.12", boot_param=None) == 9
    assert effective_reporting_order("6.12", boot_param=11) == 9              # rejected: stays -1 -> default
    assert effective_reporting_order("6.12", sysfs_after_load=11) == 9
    assert effective_reporting_order("6.12", driver_order=5) == 5             # arm64 64K: prdev->order


def test_nothing_below_the_threshold_is_reported():
    m, z = machine_with(top_blocks(40, order=8) + top_blocks(3, start=1 << 16, order=9))
    p, _ = one_pass(m, thr=9)
    assert {o for r in p.reports for _, o in r.blocks} == {9}
    assert all(not z.is_reported(pfn) for pfn, o, _, _ in top_blocks(40, order=8))


# ---- the state machine: __page_reporting_request, page_reporting_process

def test_request_from_idle_schedules_one_pass_after_the_delay():
    r = Reporter()
    r.request(1.0, 2.0)
    assert (r.state, r.next_run) == (REQUESTED, 3.0)
    r.request(2.5, 2.0)                     # already requested: no new timer
    assert r.next_run == 3.0


def test_free_below_threshold_does_not_notify():
    # mm/page_reporting.h page_reporting_notify_free: order < page_reporting_order -> return
    r = Reporter()
    r.notify_free(8, 9, 0.0, 2.0)
    assert (r.state, r.next_run) == (IDLE, None)
    r.notify_free(10, 9, 0.0, 2.0)
    assert r.state == REQUESTED


def test_request_during_a_pass_only_changes_the_state():
    # the end of the pass (atomic_cmpxchg ACTIVE -> IDLE fails) reschedules; see the budget tests
    r = Reporter(state=ACTIVE, next_run=None)
    r.request(0.5, 2.0)
    assert r.next_run is None and r.state == REQUESTED


def test_a_pass_that_finishes_goes_idle():
    m, z = machine_with(top_blocks(10))
    p, r = one_pass(m)
    assert (r.state, r.next_run, p.again) == (IDLE, None, False)
    assert p.pages == 10 << 10


# ---- budget and capacity: page_reporting_cycle

def test_budget_gives_budget_plus_one_full_reports_per_list():
    # 100 unreported order-10 blocks: nr_free 100 -> budget ceil(100/512) = 1 -> 2 x 32 blocks
    m, z = machine_with(top_blocks(100))
    p, r = one_pass(m)
    assert [len(x.blocks) for x in p.reports] == [32, 32]
    assert p.again and r.state == REQUESTED and r.next_run == pytest.approx(2.0)
    c = [c for c in p.cycles if c.order == 10][0]
    assert (c.nr_free, c.budget, c.full_reports, c.stop) == (100, 1, 2, "budget")


def test_budget_counts_reported_blocks_too():
    # nr_free counts every block of the order; 500 reported + 100 new -> budget 2 -> 96 per pass
    m, z = machine_with(top_blocks(100) + top_blocks(500, start=100 << 10, reported=True))
    p, _ = one_pass(m)
    assert [len(x.blocks) for x in p.reports] == [32, 32, 32]
    assert all(not z.is_reported(pfn) for pfn, *_ in top_blocks(100)[96:])


def test_budget_divisor_and_capacity_are_parameters():
    m, z = machine_with(top_blocks(100))
    p, _ = one_pass(m, params=ReportingParams(capacity=16, budget_divisor=4, report_latency_s=0.0,
                                              zone_gate=False, isolation_gate=False))
    # budget ceil(100 / (16 * 4)) = 2 -> 3 full reports of 16
    assert [len(x.blocks) for x in p.reports] == [16] * 3


def test_a_partial_scatterlist_carries_over_and_is_flushed_at_zone_end():
    # 10 order-9 + 10 order-10: no list fills the 32 entries; one leftover report at the zone end
    m, z = machine_with(top_blocks(10, order=9) + top_blocks(10, start=1 << 16))
    p, _ = one_pass(m)
    assert len(p.reports) == 1 and sorted(o for _, o in p.reports[0].blocks) == [9] * 10 + [10] * 10


def test_exactly_full_scatterlist_is_sent_only_on_the_next_unreported_block():
    # 40 order-9: isolate 32, the 33rd triggers the report, 8 more wait for the zone-end flush
    m, z = machine_with(top_blocks(40, order=9))
    p, _ = one_pass(m)
    assert [len(r.blocks) for r in p.reports] == [32, 8]


def test_reported_blocks_go_to_the_tail_and_are_skipped_next_time():
    m, z = machine_with(top_blocks(100))
    one_pass(m)
    lst = list(z.lists[10][MOVABLE])
    flags = [z.is_reported(p) for p in lst]
    assert flags == [False] * 36 + [True] * 64      # unreported at the head
    p2, _ = one_pass(m)
    assert p2.pages == 36 << 10 and all(z.is_reported(p) for p in lst)
    p3, r = one_pass(m)
    assert p3.pages == 0 and r.state == IDLE


def test_the_first_unprocessed_block_is_rotated_to_the_head():
    # list: reported, reported, new x 70 -> after the pass the 65th new block leads the list
    blocks = top_blocks(2, reported=True) + top_blocks(70, start=2 << 10)
    m, z = machine_with(blocks)
    one_pass(m)
    assert next(iter(z.lists[10][MOVABLE])) == (2 + 64) << 10


def test_each_migratetype_list_has_its_own_budget_isolate_is_skipped():
    blocks = (top_blocks(70, mt=MOVABLE) + top_blocks(70, start=100 << 10, mt=UNMOVABLE)
              + top_blocks(5, start=200 << 10, mt=ISOLATE) + top_blocks(5, start=210 << 10, mt=HIGHATOMIC)
              + top_blocks(5, start=220 << 10, mt=CMA))
    m, z = machine_with(blocks)
    p, _ = one_pass(m)
    reported = {pfn for r in p.reports for pfn, _ in r.blocks}
    assert not reported & {b[0] for b in top_blocks(5, start=200 << 10)}          # ISOLATE never
    assert {b[0] for b in top_blocks(5, start=210 << 10)} <= reported            # HIGHATOMIC yes
    assert {b[0] for b in top_blocks(5, start=220 << 10)} <= reported            # CMA yes
    cyc = {c.mt: c for c in p.cycles if c.order == 10}
    assert cyc[UNMOVABLE].full_reports == 2 and cyc[MOVABLE].full_reports == 2


# ---- gates

def test_zone_gate_low_watermark_plus_capacity_blocks():
    # page_reporting_process_zone: zone_watermark_ok(low + (32 << order)) on NR_FREE_PAGES
    free = 100 << 10
    m, z = machine_with(top_blocks(100), wmark_low=free - (32 << 9))
    p, _ = one_pass(m, params=GATED)
    assert p.pages == 0 and p.gated == ["0/Normal"]
    m, z = machine_with(top_blocks(100), wmark_low=free - (32 << 9) - 1)
    p, _ = one_pass(m, params=GATED)
    assert p.pages == 64 << 10 and not p.gated
    m, z = machine_with(top_blocks(100), wmark_low=free, nr_reserved_highatomic=0)
    assert one_pass(m, params=P)[0].pages == 64 << 10


def test_isolation_stops_the_list_at_min_watermark_plus_the_block():
    # __isolate_free_page: zone_watermark_ok(_watermark[WMARK_MIN] + (1 << order)); the sg holds
    # isolated pages, so NR_FREE_PAGES falls as the list is walked
    m, z = machine_with(top_blocks(10), wmark_min=(10 << 10) - (5 << 10) - 1, wmark_low=-(1 << 20))
    p, _ = one_pass(m, params=GATED)
    assert p.pages == 5 << 10
    assert [c.stop for c in p.cycles if c.order == 10] == ["watermark"]


def test_zone_dma_is_never_reported_in_a_2gib_guest():
    m = fresh_machine("6.1", 2048, pcp=False)
    rep = Reporter()
    rep.request(0.0, 2.0)
    passes = run_until_idle(m, rep, GATED, 9)
    assert all("0/DMA" in p.gated for p in passes)
    assert m.zone("0/DMA").reported_pages() == 0


# ---- merged put-backs are re-reported (page_reporting_drain + del_page_from_free_list)

def test_a_block_that_merges_on_putback_is_reported_again_at_its_new_order():
    m, z = machine_with([(0, 9, MOVABLE, False), (4096, 10, MOVABLE, True)])
    assert z.isolate(0, 9)
    z.free_block(512, 9)                      # the buddy came free while the report was out
    assert not z.putback(0, 9, True)
    assert z.where[0] == (10, MOVABLE) and not z.is_reported(0)
    p, _ = one_pass(m)
    assert [b for r in p.reports for b in r.blocks] == [(0, 10)]


# ---- the 2 GiB guest of the issue: why ~256 MiB per 2 s pass

def test_one_gib_freed_in_a_2gib_guest_comes_back_256_mib_per_pass():
    m = fresh_machine("6.1", 2048)
    res = ResidentMap(m.end_pfn)
    sim = Simulation(m, threshold=9, params=ReportingParams(report_latency_s=0.0), resident=res,
                     host=HostConfig())
    sim.run([Register(0.0), touch(60.0, "a", 1024)])
    dma32 = m.zone("0/DMA32")
    nr_free_10 = dma32.nr_free[10]
    sim.run([Free(100.0, "a")])
    after = [p for p in sim.result.passes if p.t_start > 100]
    # ~1.9 GiB free in order-10 blocks: budget ceil(~475/512) = 1 -> 2 reports x 32 x 4 MiB
    assert -(-dma32.nr_free[10] // 512) == 1 and nr_free_10 < 512
    assert [round(p.t_start - 100, 3) for p in after] == [2.0, 4.0, 6.0, 8.0]
    assert [p.pages // 256 for p in after][:3] == [256, 256, 256]
    assert 1000 <= sum(p.pages for p in after) / 256 <= 1024
    assert sim.result.curve(since=100)[-1][1] == pytest.approx(sum(p.pages for p in after) / 256)


def test_a_shorter_delay_compresses_the_staircase():
    # what-if: PAGE_REPORTING_DELAY of 250 ms instead of 2 s
    m = fresh_machine("6.1", 2048)
    sim = Simulation(m, threshold=9, params=ReportingParams(delay_s=0.25, report_latency_s=0.0))
    # (gates on: a real-sized guest passes them)
    sim.run([Register(0.0), touch(60.0, "a", 1024), Free(100.0, "a")])
    after = [p.t_start - 100 for p in sim.result.passes if p.t_start > 100]
    assert after == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_fragmented_memory_reports_nothing_new():
    # keep every other page: no free block of order >= 9 can form out of the workload's memory
    m = fresh_machine("6.1", 2048)
    sim = Simulation(m, threshold=9, params=GATED)
    sim.run([Register(0.0), touch(60.0, "a", 512), Fragment(100.0, "a", keep_every=2)])
    assert [p for p in sim.result.passes if p.t_start > 100] == []


# ---- properties over random workloads

def _in_whole_blocks(m, order: int) -> int:
    """Free pages in free blocks of at least `order`, over every zone of the model guest."""
    return sum(1 << o for z in m.zones for _, o, _, _ in z.free_blocks() if o >= order)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["touch", "free", "frag", "thp"]), st.integers(1, 96)),
                min_size=1, max_size=12),
       st.integers(7, 10), st.booleans())
@example(ops=[("touch", 11), ("touch", 96), ("frag", 2), ("frag", 43), ("thp", 15), ("thp", 63), ("thp", 85),
              ("thp", 85), ("thp", 95)], thr=7, pcp=False)  # ran the model guest out of order-9 blocks once
def test_reporting_properties(ops, thr, pcp):
    m = fresh_machine("6.1", 512, pcp=pcp)
    total = sum(z.end - z.start for z in m.zones)
    sim = Simulation(m, threshold=thr, params=GATED)
    sim.run([Register(0.0)], until=0.0)
    t = 1.0
    for i, (op, mib) in enumerate(ops):
        held = [k for k in sim.result.held]
        if op == "touch" and mib * 256 < m.free_pages() - 20000:
            sim.run([touch(t, f"t{i}", mib)], until=t)
        elif op == "thp" and mib * 256 < min(m.free_pages() - 20000, _in_whole_blocks(m, 9) - 2048):
            # (a THP needs a whole free order-9 block: after fragmenting ops free pages can be
            # plenty and such blocks too few; the kernel would fall back to 4 KiB pages, the
            # model refuses)
            sim.run([touch(t, f"t{i}", mib, thp=True)], until=t)
        elif op == "free" and held:
            sim.run([Free(t, held[mib % len(held)])], until=t)
        elif op == "frag" and held:
            sim.run([Fragment(t, held[mib % len(held)], keep_every=1 + mib % 5)], until=t)
        t += 0.7 + (mib % 7) * 0.5
    # allocations leave expand() remainders unreported without a notify; one more request
    # (a free or registration) and the passes must leave nothing reportable behind
    sim.run([Register(t)], until=None)
    held_map = bytearray(m.end_pfn)
    held_pages = 0
    for runs in sim.result.held.values():
        for q, n in runs:
            held_map[q:q + n] = b"\x01" * n
            held_pages += n
    assert held_map.count(1) == held_pages, "a page is held twice"
    for p in sim.result.passes:
        for r in p.reports:
            for pfn, o in r.blocks:
                assert o >= thr                                    # nothing below the threshold
    for z in m.zones:
        for pfn, o, mt, rep in z.free_blocks():
            if rep:
                assert o >= thr and mt != ISOLATE
            # nothing the workload holds is inside a free (let alone reported) block
            assert held_map.count(1, pfn, pfn + (1 << o)) == 0, "free block overlaps held memory"
    # pages conserved: free + pcp + held + boot reservations == RAM
    boot = fresh_machine("6.1", 512, pcp=False)
    reserved = total - boot.free_pages()
    assert m.free_pages() + sum(z.pcp_count for z in m.zones) + held_pages + reserved == total
    # reporting went idle and left no unreported reportable block behind (gates allowing)
    assert sim.reporter.state == IDLE
    for z in m.zones:
        if not z.watermark_ok(z.wmark_low + (32 << thr)):
            continue
        for pfn, o, mt, rep in z.free_blocks():
            if o >= thr and mt != ISOLATE:
                assert rep, f"{z.key} {pfn}/{o} left unreported"
