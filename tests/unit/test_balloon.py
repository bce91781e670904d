"""Pure balloon helpers (harness/vm/balloon.py) and the inflate model (harness/model/balloon.py)."""
from array import array

import pytest

from harness.vm import balloon
from harness.model.balloon import FreeBlock, hugetlb_discards, predict_inflate


def _flags(pfns_with_bits: dict, n: int) -> bytes:
    a = array("Q", [0] * n)
    for pfn, bits in pfns_with_bits.items():
        for b in bits:
            a[pfn] |= 1 << b
    return a.tobytes()


def test_offline_and_free_runs_from_kpageflags():
    data = _flags({1: [23], 2: [23], 3: [10], 5: [23, 3], 7: [23]}, 8)
    assert balloon.offline_pfns(data) == [(1, 3), (5, 6), (7, 8)]
    assert balloon.free_pfns(data) == [(3, 4)]
    with pytest.raises(ValueError):
        balloon.offline_pfns(data[:-1])


def test_run_algebra():
    a = [(0, 10), (20, 30)]
    b = [(5, 25)]
    assert balloon.intersect(a, b) == [(5, 10), (20, 25)]
    assert balloon.minus(a, b) == [(0, 5), (25, 30)]
    assert balloon.minus(a, []) == a and balloon.minus(a, a) == []
    assert balloon.run_pages(a) == 20
    held = bytearray(30)
    held[4:7] = b"\1\1\1"
    assert balloon.held_in_runs(held, balloon.intersect(a, b)) == 2


def test_guest_stats_unset_is_none_and_garbage_is_refused():
    s = balloon.parse_guest_stats({"stats": {"stat-free-memory": 5, "stat-oom-kills": balloon.UNSET}, "last-update": 7})
    assert s.values == {"stat-free-memory": 5, "stat-oom-kills": None} and s.set_names() == ["stat-free-memory"]
    for bad in ({}, {"stats": {"x": -1}, "last-update": 1}, {"stats": {"x": "1"}, "last-update": 1}):
        with pytest.raises(ValueError):
            balloon.parse_guest_stats(bad)


def test_balloon_change_events_only():
    ev = [{"event": "NIC_RX_FILTER_CHANGED", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}},
          {"event": "BALLOON_CHANGE", "data": {"actual": 805306368}, "timestamp": {"seconds": 2, "microseconds": 500000}}]
    assert balloon.parse_events(ev) == [balloon.BalloonChange(2.5, 805306368)]
    with pytest.raises(ValueError):
        balloon.parse_events([{"event": "BALLOON_CHANGE", "data": {}}])


def test_stat_formulas():
    vm = {"pgfault": 10, "pgmajfault": 1, "nr_free_pages": 3, "nr_file_pages": 2, "pswpin": 0, "pswpout": 0,
          "pgscan_kswapd": 4, "allocstall_dma32": 1, "allocstall_normal": 2}
    mem = {"MemTotal": 100, "MemAvailable": 50}
    assert balloon.expected_stat("stat-free-memory", vm, mem) == 3 * 4096
    assert balloon.expected_stat("stat-total-memory", vm, mem) == 100 * 1024
    assert balloon.expected_stat("stat-minor-faults", vm, mem) == 10  # all faults, not a page count
    assert balloon.expected_stat("stat-alloc-stalls", vm, mem) == 3
    assert balloon.expected_stat("stat-async-scans", vm, mem) == 4 * 4096
    assert balloon.expected_stat("stat-nonsense", vm, mem) is None


def test_counter_outside_its_bracket_fails_and_gauge_slack_is_bounded():
    c = balloon.StatCheck("stat-minor-faults", 11, 5, 10, True, 0)
    assert not c.ok and c.skew == 1
    assert balloon.StatCheck("stat-minor-faults", 10, 5, 10, True, 0).ok
    g = balloon.StatCheck("stat-free-memory", 100, 80, 90, False, 10)
    assert g.ok and not balloon.StatCheck("stat-free-memory", 101, 80, 90, False, 10).ok


# --- the model ----------------------------------------------------------------------

def test_smallest_order_first_and_held_pages_counted():
    blocks = [FreeBlock("DMA32", 0, 1), FreeBlock("DMA32", 1, 2), FreeBlock("DMA32", 9, 0), FreeBlock("DMA32", 9, 512)]
    p = predict_inflate(blocks, 3)
    assert (p.held_lo, p.held_hi) == (3, 3) and p.expected_mib == pytest.approx(3 / 256)
    # 515 pages: the two small blocks and one order-9 block, which one unknown
    p = predict_inflate(blocks, 515)
    assert (p.held_lo, p.held_hi) == (3, 515)
    # ZONE_DMA is never used; DMA32 after Normal
    p = predict_inflate([FreeBlock("DMA", 0, 1), FreeBlock("Normal", 0, 0), FreeBlock("DMA32", 0, 1)], 1)
    assert (p.held_lo, p.held_hi) == (0, 0)


def test_partial_block_bounds():
    # 100 pages of one order-9 block with 50 held: 0..50 of them in the part taken
    p = predict_inflate([FreeBlock("DMA32", 9, 50)], 100)
    assert (p.held_lo, p.held_hi) == (0, 50)
    p = predict_inflate([FreeBlock("DMA32", 9, 500)], 100)
    assert (p.held_lo, p.held_hi) == (88, 100)


def test_non_movable_blocks_are_skipped_and_pcp_widens_both_ways():
    blocks = [FreeBlock("DMA32", 0, 1), FreeBlock("DMA32", 10, 0)]
    assert predict_inflate(blocks, 1, movable={("DMA32", 0): 0, ("DMA32", 10): 1}).held_hi == 0
    p = predict_inflate(blocks, 10, pcp_max=4)
    assert (p.held_lo, p.held_hi) == (1, 5)
    assert {t.name for t in p.terms} == {"block_choice", "pcp_pages"}


def test_beyond_free_memory_is_reclaim():
    p = predict_inflate([FreeBlock("DMA32", 0, 0)], 5)
    assert p.taken_free == 1 and p.held_hi == 4 and any(t.name == "reclaim" for t in p.terms)


def test_hugetlb_pages_never_complete():
    assert hugetlb_discards(4096) and not hugetlb_discards(2 << 20)
    p = predict_inflate([FreeBlock("DMA32", 10, 1024)], 1024, host_page_size=2 << 20)
    assert p.held_lo == 1024 and p.expected_mib == 0.0 and p.interval_mib(5.0) == (-5.0, 5.0)
