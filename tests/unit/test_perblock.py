"""perblock: block inference, the join and the invariants, on synthetic scans and on real captures.

Real captures (tests/data/perblock/, see its README): Debian 6.1.0-50 (6.1.176) guest
(and 6.12.117 for on612_*), QEMU 7.2.22, TCG, 2 GiB, 1 GiB touched then freed;
reporting on, off, and on with page_poison=1 (the guest reports, QEMU discards nothing).
"""
import json
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from harness.measure import perblock
from harness.measure.pagemap import RamRange
from harness.measure.perblock import Block, Capture

DATA = Path(__file__).resolve().parents[1] / "data" / "perblock"
GIB_PAGES = 1 << 18


def load(name: str) -> Capture:
    return Capture.from_json(json.loads((DATA / f"{name}.json").read_text()))


# --- synthetic scans -----------------------------------------------------------

ZONEINFO = """\
Node 0, zone      DMA
  pages free     3776
        boost    0
        min      86
        low      107
        high     128
        spanned  4095
        present  3998
        managed  3840
  start_pfn:           1
Node 0, zone    DMA32
  pages free     479676
        min      11177
        low      13971
        high     16765
        spanned  12288
        present  12288
        managed  12000
  start_pfn:           4096
Node 0, zone   Normal
  pages free     0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
"""
BUDDY = "Node 0, zone      DMA 0 0 0 0 0 0 0 0 0 0 0\nNode 0, zone    DMA32 0 0 0 0 0 0 0 0 0 0 0\n"


def scan_text(runs, buddy=BUDDY) -> str:
    body = "".join(f"{c} {s} {n}\n" for c, s, n in runs)
    return (f"e2epfn 1\n== buddyinfo\n{buddy}== zoneinfo\n{ZONEINFO}== runs\n{body}"
            f"== buddyinfo\n{buddy}== end pfns=16384 scan_us=1000\n")


def synthetic(runs, held=(), recheck=None, order=9) -> Capture:
    h = bytearray(16384)
    for a, b in held:
        h[a:b] = b"\1" * (b - a)
    return Capture(scan_text(runs), [RamRange(1, 16383, 0)], h, order, {}, recheck)


def test_split_aligned_examples():
    assert list(perblock.split_aligned(0, 1024)) == [(0, 10)]
    assert list(perblock.split_aligned(512, 2048)) == [(512, 9), (1024, 10)]
    assert list(perblock.split_aligned(3, 8)) == [(3, 0), (4, 2)]
    assert list(perblock.split_aligned(0, 4096)) == [(0, 10), (1024, 10), (2048, 10), (3072, 10)]


@given(st.integers(0, 1 << 20), st.integers(1, 1 << 14))
def test_split_aligned_covers_with_maximal_aligned_blocks(start, n):
    blocks = list(perblock.split_aligned(start, start + n))
    pos = start
    for head, order in blocks:
        assert head == pos and head % (1 << order) == 0 and 0 <= order <= perblock.MAX_ORDER
        pos += 1 << order
    assert pos == start + n
    # maximal: no two neighbours are mergeable buddies (the buddy allocator would have merged them)
    for (h1, o1), (h2, o2) in zip(blocks, blocks[1:]):
        assert not (o1 == o2 < perblock.MAX_ORDER and h1 ^ (1 << o1) == h2)


def test_reported_head_cuts_a_run():
    # 0x1000..: an unreported order-9 block, then a reported one: not one order-10 block
    runs = [("F", 4096, 512), ("H", 4608, 1), ("F", 4609, 511)]
    zones = perblock.parse_zones(ZONEINFO)
    assert perblock.infer_blocks(runs, zones) == [Block(4096, 9, False, "DMA32"), Block(4608, 9, True, "DMA32")]
    runs = [("H", 4096, 1), ("F", 4097, 1023), ("F", 5120, 1024)]
    assert perblock.infer_blocks(runs, zones) == [Block(4096, 10, True, "DMA32"), Block(5120, 10, False, "DMA32")]


def test_zone_limit_cuts_a_run():
    zones = perblock.parse_zones(ZONEINFO)
    blocks = perblock.infer_blocks([("F", 3072, 2048)], zones)
    assert blocks == [Block(3072, 10, False, "DMA"), Block(4096, 10, False, "DMA32")]


def test_zoneinfo_zones_and_gate():
    dma, dma32 = perblock.parse_zones(ZONEINFO)
    assert (dma.name, dma.start, dma.end, dma.free, dma.low) == ("DMA", 1, 4096, 3776, 107)
    assert dma32.end == 4096 + 12288
    # page_reporting_process_zone: free must exceed low + (32 << order)
    assert dma.gated(9) and not dma32.gated(9) and not dma32.gated(10)


def test_zones_of_a_second_node_are_told_apart():
    text = ZONEINFO + ("Node 1, zone   Normal\n  pages free     100\n        min      5\n        low      7\n"
                       "        high     9\n        spanned  4096\n        present  4096\n        managed  4000\n"
                       "  start_pfn:           16384\n")
    zones = perblock.parse_zones(text)
    assert [z.name for z in zones] == ["DMA", "DMA32", "Normal@node1"]
    buddy = BUDDY + "Node 1, zone   Normal 0 0 0 0 0 0 0 0 0 0 4\n"
    scan = perblock.parse_scan(scan_text([("F", 16384, 4096)], buddy).replace(ZONEINFO, text))
    blocks = perblock.infer_blocks(scan.runs, scan.zones)
    assert {b.zone for b in blocks} == {"Normal@node1"}
    assert perblock.buddyinfo_mismatches(blocks, scan, 0) == []


@pytest.mark.parametrize("text", [
    "", "e2epfn 2\n", scan_text([("F", 0, 1)]).replace("== end pfns=16384 scan_us=1000\n", ""),
    scan_text([]).replace("== zoneinfo", "!! cannot open /proc/zoneinfo\n== zoneinfo"),
    scan_text([("X", 0, 1)]), scan_text([("F", 0, 1)]).replace("F 0 1", "F 0"), scan_text([]).replace("scan_us=1000", "scan_us"),
])
def test_parse_scan_rejects_truncated_or_foreign_text(text):
    with pytest.raises(perblock.procfs.ProcParseError):
        perblock.parse_scan(text)


def test_held_reported_block_is_a_violation_that_explains_itself():
    cap = synthetic([("A", 1, 4095), ("H", 4096, 1), ("F", 4097, 1023)], held=[(4100, 4102)])
    (v,), raced = perblock.reported_held(cap)
    assert raced == 0
    assert v.block == Block(4096, 10, True, "DMA32") and v.held == 2
    assert str(v).startswith("reported_held: block pfn 0x1000 order 10 in DMA32 (reported): host holds 2/1024 pages")


def test_recheck_dismisses_a_block_allocated_between_scan_and_read():
    runs = [("A", 1, 4095), ("H", 4096, 1), ("F", 4097, 1023)]
    allocated = synthetic([("A", 1, 5119)], held=[(4096, 5120)])
    cap = synthetic(runs, held=[(4096, 4097)], recheck=allocated)
    assert perblock.reported_held(cap) == ([], 1)
    still = synthetic(runs, held=[(4096, 4097)])
    cap = synthetic(runs, held=[(4096, 4097)], recheck=still)
    (v,), raced = perblock.reported_held(cap)
    assert raced == 0 and "still so in the recheck" in str(v)


def test_reported_while_off():
    cap = synthetic([("H", 4096, 1), ("F", 4097, 1023), ("F", 5120, 1024)])
    (v,) = perblock.reported_while_off(cap)
    assert v.rule == "reported_while_off" and v.block.head == 4096


def test_transition_counts_released_and_still_held_pages():
    after_free = synthetic([("F", 4096, 2048)], held=[(4096, 6144)])
    settled = synthetic([("H", 4096, 1), ("F", 4097, 1023), ("H", 5120, 1), ("F", 5121, 1023)],
                        held=[(5120, 5130)])
    counts, (v,) = perblock.transition(after_free, settled)
    assert counts == {"held_after_free": 2048, "released": 2038, "still_held": 10}
    assert v.rule == "not_released" and v.block.head == 5120 and v.held == 10


def test_join_classes_count_pages_inside_ram_only():
    cap = synthetic([("R", 0, 64), ("A", 64, 4032), ("F", 4096, 256), ("F", 4352, 512), ("A", 4864, 256),
                     ("H", 5120, 1), ("F", 5121, 1023), ("N", 6144, 10240)], held=[(0, 4096), (4096, 4100)])
    j = perblock.join(cap)
    assert j["reserved"] == {"pages": 63, "held": 63}  # pfn 0 is outside the RAM range
    assert j["allocated"] == {"pages": 4032 + 256, "held": 4032}
    # the two F runs touch: one free run 4096..4864 = an order-9 block, then an order-8 one
    assert j["free_unreported"] == {"pages": 512, "held": 4}
    assert j["free_below_order"] == {"pages": 256, "held": 0}
    assert j["reported"] == {"pages": 1024, "held": 0}


# --- real captures ---------------------------------------------------------------

def test_capture_round_trips_through_json():
    cap = load("poison_settled")
    again = Capture.from_json(json.loads(perblock.dumps(cap)))
    assert again.held == cap.held and again.text == cap.text and again.recheck.held == cap.recheck.held


@pytest.mark.parametrize("name", ["on_boot", "on_after_free", "on_settled", "off_after_free", "off_settled",
                                  "poison_after_free", "poison_settled", "on612_after_free", "on612_settled"])
def test_inferred_blocks_agree_with_buddyinfo_at_every_order(name):
    cap = load(name)
    assert perblock.buddyinfo_mismatches(cap.blocks, cap.scan, 0) == []
    # every free page is in exactly one block, and blocks never overlap
    free = sum(n for c, _, n in cap.scan.runs if c in "FH")
    assert sum(b.pages for b in cap.blocks) == free
    heads = sorted((b.head, b.end) for b in cap.blocks)
    assert all(e1 <= h2 for (_, e1), (h2, _) in zip(heads, heads[1:]))


def test_reporting_on_measured():
    a, b = load("on_after_free"), load("on_settled")
    assert perblock.violations(a, b, reporting=True) == []
    assert perblock.block_counts(b) == {"DMA": {"9": {"reported": 0, "unreported": 1},
                                               "10": {"reported": 0, "unreported": 3}},
                                       "DMA32": {"9": {"reported": 4, "unreported": 0},
                                                 "10": {"reported": 466, "unreported": 0}}}
    ja, jb = perblock.join(a), perblock.join(b)
    # right after the free, the freed GiB sits in unreported blocks the host holds...
    assert ja["free_unreported"]["held"] >= GIB_PAGES - 4096
    # ...once settled, all of it is in reported blocks and none is held; the DMA zone's
    # blocks (gated) stay unreported, two of them held
    assert jb["reported"] == {"pages": 479232, "held": 0}
    assert jb["free_unreported"] == {"pages": 3584, "held": 2048}
    assert jb["allocated"]["held"] == jb["allocated"]["pages"]
    assert perblock.transition(a, b)[0] == {"held_after_free": 256512, "released": 256512, "still_held": 0}
    assert perblock.pending(b) == []


def test_reporting_on_measured_on_612():
    # Debian 6.12.117: tails marked BUDDY as on 6.1 (the blocks match buddyinfo, above)
    a, b = load("on612_after_free"), load("on612_settled")
    assert perblock.violations(a, b, reporting=True) == []
    assert perblock.transition(a, b)[0] == {"held_after_free": 259072, "released": 259072, "still_held": 0}
    assert perblock.join(b)["reported"] == {"pages": 485376, "held": 0}


def test_reporting_off_measured():
    a, b = load("off_after_free"), load("off_settled")
    assert perblock.violations(a, b, reporting=False) == []
    assert perblock.join(b)["reported"]["pages"] == 0
    assert perblock.join(b)["free_unreported"]["held"] >= GIB_PAGES
    # the same captures judged as if reporting were on: nothing reported, so nothing violated either
    assert perblock.violations(a, b, reporting=True) == []


def test_page_poison_measured_reported_yet_held():
    a, b = load("poison_after_free"), load("poison_settled")
    held, raced = perblock.reported_held(b)
    reported = [x for x in b.blocks if x.reported]
    assert raced == 0 and len(held) == len(reported) == 345
    assert all(v.held == v.block.pages for v in held)  # every page of every reported block
    assert b.recheck is not None  # the recheck was taken, and confirmed each one
    with pytest.raises(perblock.InvariantViolation, match=r"(?s)908 per-block invariant violations.*"
                                                          r"reported_held: block pfn 0x"):
        perblock.check(a, b, reporting=True)


def test_summary_is_json():
    s = perblock.summary(load("poison_after_free"), load("poison_settled"), True)
    back = json.loads(json.dumps(s))
    assert back["violations"]["by_rule"] == {"reported_held": 563, "not_released": 345}
    assert len(back["violations"]["first"]) == perblock.VIOLATIONS_SHOWN
    assert back["settled"]["zones"]["DMA"] == {"pfns": [1, 4096], "gated": True}
    assert set(back["settled"]["pages"]) == set(perblock.CLASSES)


# --- which pending blocks asked for a pass (stored real captures before a release) ------

def _pre_capture(name: str) -> Capture:
    r = json.loads((DATA.parent / "release" / f"{name}.json").read_text())
    return Capture.from_json(r["phases"][-1]["pre"]["capture"])


def test_a_held_pending_block_asked_and_an_unheld_one_did_not():
    # restored_early_worker: order-10 pfn 334848, 512 pages held (a re-merge after an SSH
    # command), its pass came 1.4 s after the release; order8_late_pass: order-8 pfn 87808,
    # none held, its pass came on time
    early, late = _pre_capture("restored_early_worker_6.1_on"), _pre_capture("order8_late_pass_6.1_on")
    assert [(b.head, b.order) for b in perblock.asked(early)] == [(334848, 10)]
    assert [(b.head, b.order) for b in perblock.pending(late)] == [(87808, 8)]
    assert perblock.asked(late) == []
    # on a migration destination an unheld block may be freed zero-content pages: it counts
    assert [(b.head, b.order) for b in perblock.asked(late, unheld_ask_none=False)] == [(87808, 8)]
    assert perblock.asked(early, stuck={(334848, 10)}) == []


def test_a_batch_of_pending_blocks_counts_whatever_the_host_holds():
    # a list with a batch or more unreported re-arms the worker (page_reporting_cycle's budget)
    cap = _pre_capture("order8_late_pass_6.1_on")
    zone = perblock.pending(cap)[0].zone
    cap.blocks = [Block(head=(1 << 19) + (i << 9), order=9, reported=False, zone=zone) for i in range(perblock.ONE_BATCH)]
    assert not any(cap.held_in(b.head, b.end) for b in cap.blocks)
    assert len(perblock.asked(cap)) == perblock.ONE_BATCH
    cap.blocks = cap.blocks[1:]
    assert perblock.asked(cap) == []


def test_flagless_blocks_are_whole_aligned_runs_of_pages_without_flags():
    from harness.measure.perblock import Scan
    runs = (("A", 0, 512), ("P", 512, 300), ("P", 812, 212),   # 512..1024 in two runs: one block
            ("P", 1024, 1024),                                  # two blocks
            ("F", 2048, 10), ("P", 2100, 1000),                 # unaligned: the kernel's own pages, not a THP
            ("P", 3584, 512), ("A", 4096, 1))                   # starts aligned, ends on a boundary
    s = Scan(runs=runs, zones=(), buddy_before=(), buddy_after=(), pfns=4097, scan_us=0.0)
    assert s.flagless_blocks(9) == (512, 1024, 1536, 3584)
    # a version 1 scan put those pages in A: it cannot tell
    assert Scan(runs=runs, zones=(), buddy_before=(), buddy_after=(), pfns=0, scan_us=0.0, version=1).flagless_blocks(9) is None


def test_a_version_3_scan_tells_page_tables_apart():
    # e2epfn 3's T class (KPF_PGTABLE): parsed as its own class, never free, and a page table
    # breaks a flagless run as any flagged page does
    text = scan_text([("A", 1, 511), ("T", 512, 100), ("P", 612, 412), ("F", 1024, 1024)]).replace(
        "e2epfn 1\n", "e2epfn 3\n")
    s = perblock.parse_scan(text)
    assert s.version == 3 and ("T", 512, 100) in s.runs
    assert s.flagless_blocks(9) == ()
    assert [(b.head, b.order) for b in perblock.infer_blocks(s.runs, s.zones)] == [(1024, 10)]
    with pytest.raises(perblock.procfs.ProcParseError):
        perblock.parse_scan(text.replace("T 512 100", "Q 512 100"))
