"""Parsers of guest /proc/zoneinfo, /proc/pagetypeinfo, /proc/vmstat (harness/measure/snapshot.py).

The literal texts below follow mm/vmstat.c seq_printf formats of Linux 6.1
(zoneinfo_show_print, pagetypeinfo_showfree_print,
pagetypeinfo_showblockcount_print) for a 2 GiB, 2 vCPU q35 guest. Real captures
put under tests/data/<kernel>/.../{zoneinfo,pagetypeinfo,buddyinfo,vmstat} are
picked up by test_real_captures without editing this file.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.measure.procfs import ProcParseError
from harness.measure.snapshot import (
    PAGETYPEINFO_CAP, parse_pagetypeinfo, snapshot_from_capture, parse_vmstat, parse_zoneinfo, render_buddyinfo,
    render_pagetypeinfo, render_vmstat, render_zoneinfo, snapshot_from_texts,
)

DATA = Path(__file__).resolve().parents[1] / "data"

ZONEINFO_61 = """\
Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 3069
      nr_active_anon 31
      nr_inactive_file 9421
      nr_active_file 2204
      nr_unevictable 0
      nr_slab_reclaimable 3411
      nr_slab_unreclaimable 4963
      nr_anon_pages 2989
      nr_mapped    3377
      nr_file_pages 11750
      nr_anon_transparent_hugepages 0
  pages free     3840
        boost    0
        min      11
        low      15
        high     19
        spanned  4095
        present  3998
        managed  3840
        cma      0
        protection: (0, 1888, 1888, 1888, 1888)
      nr_free_pages 3840
      nr_zone_inactive_anon 0
      nr_zone_active_anon 0
      nr_zone_inactive_file 0
      nr_zone_active_file 0
      nr_zone_unevictable 0
      nr_zone_write_pending 0
      nr_mlock     0
      nr_bounce    0
      nr_zspages   0
      nr_free_cma  0
      numa_hit     0
      numa_miss    0
      numa_foreign 0
      numa_interleave 0
      numa_local   0
      numa_other   0
  pagesets
    cpu: 0
              count: 0
              high:  0
              batch: 1
  vm stats threshold: 4
    cpu: 1
              count: 0
              high:  0
              batch: 1
  vm stats threshold: 4
  node_unreclaimable:  0
  start_pfn:           1
Node 0, zone    DMA32
  pages free     486153
        boost    0
        min      1436
        low      1956
        high     2476
        spanned  520190
        present  520190
        managed  503818
        cma      0
        protection: (0, 0, 0, 0, 0)
      nr_free_pages 486153
      nr_zone_inactive_anon 3069
      nr_zone_active_anon 31
      nr_zone_inactive_file 9421
      nr_zone_active_file 2204
      nr_zone_unevictable 0
      nr_zone_write_pending 0
      nr_mlock     0
      nr_bounce    0
      nr_zspages   0
      nr_free_cma  0
      numa_hit     131187
      numa_miss    0
      numa_foreign 0
      numa_interleave 1287
      numa_local   131187
      numa_other   0
  pagesets
    cpu: 0
              count: 312
              high:  978
              batch: 63
  vm stats threshold: 24
    cpu: 1
              count: 17
              high:  978
              batch: 63
  vm stats threshold: 24
  node_unreclaimable:  0
  start_pfn:           4096
Node 0, zone   Normal
  pages free     0
        boost    0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
        cma      0
        protection: (0, 0, 0, 0, 0)
Node 0, zone  Movable
  pages free     0
        boost    0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
        cma      0
        protection: (0, 0, 0, 0, 0)
Node 0, zone   Device
  pages free     0
        boost    0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
        cma      0
        protection: (0, 0, 0, 0, 0)
"""

PAGETYPEINFO_61 = """\
Page block order: 9
Pages per block:  512

Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 
Node    0, zone      DMA, type    Unmovable      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type      Movable      0      0      0      0      0      0      0      0      1      1      3 
Node    0, zone      DMA, type  Reclaimable      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type          CMA      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone      DMA, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone    DMA32, type    Unmovable     21     13      9      8      4      3      2      1      1      0      0 
Node    0, zone    DMA32, type      Movable     37     18     11      5      3      2      2      1      2      3    471 
Node    0, zone    DMA32, type  Reclaimable      3      2      1      1      1      0      1      0      1      0      0 
Node    0, zone    DMA32, type   HighAtomic      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone    DMA32, type          CMA      0      0      0      0      0      0      0      0      0      0      0 
Node    0, zone    DMA32, type      Isolate      0      0      0      0      0      0      0      0      0      0      0 

Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate 
Node 0, zone      DMA            1            7            0            0            0            0 
Node 0, zone    DMA32           18         1000            8            0            0            0 
"""

BUDDYINFO_61 = """\
Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 
Node 0, zone    DMA32     61     33     21     14      8      5      5      2      4      3    471 
"""

VMSTAT_61 = """\
nr_free_pages 489993
nr_zone_inactive_anon 3069
nr_zone_active_anon 31
nr_inactive_anon 3069
pgalloc_dma 0
pgalloc_dma32 301255
pgfree 791620
nr_unstable 0
"""


def test_zoneinfo_61_fields():
    zs = parse_zoneinfo(ZONEINFO_61)
    assert [z.zone for z in zs] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    dma, dma32 = zs[0], zs[1]
    assert (dma.free, dma.min, dma.low, dma.high, dma.spanned, dma.present, dma.managed) == \
        (3840, 11, 15, 19, 4095, 3998, 3840)
    assert dma.protection == (0, 1888, 1888, 1888, 1888)
    assert dma.node_stats["nr_inactive_anon"] == 3069 and "nr_inactive_anon" not in dma.stats
    assert dma.stats["nr_free_pages"] == 3840 and dma.stats["numa_interleave"] == 0
    assert dma.start_pfn == 1 and dma32.start_pfn == 4096
    assert [(p.cpu, p.count, p.high, p.batch) for p in dma32.pagesets] == [(0, 312, 978, 63), (1, 17, 978, 63)]
    assert dma32.pcp_pages == 329
    assert dma32.pagesets[0].extra["stat_threshold"] == 24
    assert not zs[2].populated and zs[2].pagesets == () and zs[2].start_pfn is None
    assert dma32.min_raw == 1436


def test_zoneinfo_newer_kernel_lines_are_kept_not_rejected():
    # 6.12 prints 'promo'; later kernels widen the pcp lines and add highatomic counters
    text = ZONEINFO_61.replace("        high     2476\n", "        high     2476\n        promo    2996\n")
    text = text.replace("              count: 312\n              high:  978\n              batch: 63\n",
                        "              count:    312\n              high:     978\n              batch:    63\n"
                        "              high_min: 245\n              high_max: 1956\n")
    text = text.replace("  start_pfn:           4096\n",
                        "  start_pfn:           4096\n  reserved_highatomic: 512\n  free_highatomic:     0\n")
    dma32 = parse_zoneinfo(text)[1]
    assert dma32.extra["promo"] == 2996
    assert dma32.pagesets[0].count == 312 and dma32.pagesets[0].extra["high_max"] == 1956
    assert dma32.reserved_highatomic == 512


def test_zoneinfo_separate_per_node_section():
    # kernels after v4.16-era reshuffles have printed node stats either inside the first
    # populated zone or as their own 'Node N, per-node stats' block: accept both
    head, rest = ZONEINFO_61.split("  per-node stats\n", 1)
    node_lines, zone_rest = rest.split("  pages free", 1)
    text = "Node 0, per-node stats\n" + node_lines + head + "  pages free" + zone_rest
    zs = parse_zoneinfo(text)
    assert zs[0].free == 3840 and not zs[0].node_stats and zs[1].free == 486153


@pytest.mark.parametrize("bad", [
    "",
    "Node 0, zone DMA\n  pages free     x\n",
    "Node 0, zone DMA\n  pages free     1\n",                     # no watermarks
    "  pages free 1\n",                                           # outside a zone
    ZONEINFO_61.replace("protection: (0, 1888", "protection: 0, 1888"),
    ZONEINFO_61.replace("              count: 312", "              count: lots"),
    ZONEINFO_61.replace("      numa_hit     131187", "      numa_hit 131187 extra"),
])
def test_zoneinfo_malformed(bad):
    with pytest.raises(ProcParseError):
        parse_zoneinfo(bad)


def test_pagetypeinfo_61():
    pt = parse_pagetypeinfo(PAGETYPEINFO_61)
    assert (pt.pageblock_order, pt.pages_per_block, pt.nr_orders) == (9, 512, 11)
    assert pt.free[(0, "DMA32", "Movable")][10] == 471
    assert pt.blocks[(0, "DMA32")]["Movable"] == 1000
    assert pt.types == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")
    assert pt.zones() == [(0, "DMA"), (0, "DMA32")]


def test_pagetypeinfo_capped_count_is_rebuilt_from_buddyinfo():
    # pagetypeinfo_showfree_print stops at 100000 and prints '>100000'
    pt_text = PAGETYPEINFO_61.replace("DMA32, type      Movable     37", "DMA32, type      Movable >100000")
    bi = BUDDYINFO_61.replace("DMA32     61", "DMA32 150024")
    s = snapshot_from_texts(zoneinfo=ZONEINFO_61, pagetypeinfo=pt_text, buddyinfo=bi, vmstat=VMSTAT_61,
                            kernel="6.1", reporting_order=9)
    assert (0, "DMA32", "Movable", 0) in s.pagetypes.overflow
    assert s.free_counts(0, "DMA32")[1][0] == 150024 - 21 - 3
    assert s.free_counts(0, "DMA32")[1][0] >= PAGETYPEINFO_CAP


@pytest.mark.parametrize("bad", [
    "",
    PAGETYPEINFO_61.replace("Pages per block:  512", "Pages per block:  500"),
    PAGETYPEINFO_61.replace("type    Unmovable     21", "type    Unmovable"),
    PAGETYPEINFO_61.replace("Unmovable     21", "Sticky     21"),
    PAGETYPEINFO_61.replace("            1            7 ", "            1 "),
    PAGETYPEINFO_61.replace("0      1      2      3", "1      2      3      4"),
])
def test_pagetypeinfo_malformed(bad):
    with pytest.raises(ProcParseError):
        parse_pagetypeinfo(bad)


def test_vmstat():
    vm = parse_vmstat(VMSTAT_61)
    assert vm["pgfree"] == 791620 and vm["nr_unstable"] == 0
    for bad in ("", "nr_free_pages\n", "nr_free_pages 12 13\n", "nr_free_pages x\n"):
        with pytest.raises(ProcParseError):
            parse_vmstat(bad)


def test_snapshot_61():
    s = snapshot_from_texts(zoneinfo=ZONEINFO_61, pagetypeinfo=PAGETYPEINFO_61, buddyinfo=BUDDYINFO_61,
                            vmstat=VMSTAT_61, kernel="6.1.0-28-amd64", reporting_order=9)
    assert [z.zone for z in s.populated_zones()] == ["DMA", "DMA32"]
    fc = s.free_counts(0, "DMA32")
    assert fc[1][10] == 471 and fc[0][0] == 21
    # buddyinfo and pagetypeinfo agree here
    assert sum(c[10] for c in fc.values()) == s.buddy[1].free[10]
    assert s.free_pages_at_or_above(9) == (3 * 1024 + 512) + (471 * 1024 + 3 * 512)


@pytest.mark.parametrize("kw", [
    dict(reporting_order=11), dict(reporting_order=-1),
    dict(buddyinfo="Node 1, zone    DMA32 1 1 1 1 1 1 1 1 1 1 1\n"),
    dict(buddyinfo="Node 0, zone    DMA32 1 1 1\n"),
])
def test_snapshot_inconsistent(kw):
    args = dict(zoneinfo=ZONEINFO_61, pagetypeinfo=PAGETYPEINFO_61, buddyinfo=BUDDYINFO_61, vmstat=VMSTAT_61,
                kernel="6.1", reporting_order=9)
    args.update(kw)
    with pytest.raises(ProcParseError):
        snapshot_from_texts(**args)


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_render_round_trip(kernel):
    """render_* print what the kernel prints; parsing it back gives the same data."""
    zs = parse_zoneinfo(ZONEINFO_61)
    pt = parse_pagetypeinfo(PAGETYPEINFO_61)
    zs2 = parse_zoneinfo(render_zoneinfo(zs, kernel))
    for a, b in zip(zs, zs2):
        assert (a.key, a.free, a.min, a.low, a.high, a.managed, a.protection, a.start_pfn, a.pagesets and
                [(p.cpu, p.count, p.high, p.batch) for p in a.pagesets]) == \
               (b.key, b.free, b.min, b.low, b.high, b.managed, b.protection, b.start_pfn, b.pagesets and
                [(p.cpu, p.count, p.high, p.batch) for p in b.pagesets])
    pt2 = parse_pagetypeinfo(render_pagetypeinfo(pt))
    assert dict(pt2.free) == dict(pt.free) and {k: dict(v) for k, v in pt2.blocks.items()} == \
        {k: dict(v) for k, v in pt.blocks.items()}
    assert render_buddyinfo(pt).split() == BUDDYINFO_61.split()
    assert parse_vmstat(render_vmstat(parse_vmstat(VMSTAT_61))) == parse_vmstat(VMSTAT_61)


def test_render_matches_kernel_layout_61():
    # the renderer is held to the hand-written kernel text, so it can stand in for captures
    assert render_zoneinfo(parse_zoneinfo(ZONEINFO_61), "6.1").splitlines() == ZONEINFO_61.splitlines()
    assert render_pagetypeinfo(parse_pagetypeinfo(PAGETYPEINFO_61)).splitlines() == \
        PAGETYPEINFO_61.splitlines()


# ---- any text: nothing but ProcParseError escapes

_ANY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_lines = st.lists(st.one_of(
    st.text(max_size=40),
    st.sampled_from(["Node 0, zone      DMA", "  pages free     1", "        min      1", "  pagesets",
                     "    cpu: 0", "              count: 1", "        protection: (0, 1)", "Page block order: 9",
                     "Pages per block:  512", "Free pages count per migrate type at order 0 1",
                     "Node    0, zone      DMA, type      Movable      1      2",
                     "Number of blocks type     Unmovable      Movable",
                     "Node 0, zone      DMA            1            7", "nr_free_pages 5", ">100000"]),
), max_size=30).map("\n".join)


@_ANY
@given(_lines)
def test_parsers_raise_only_procparseerror(text):
    for parse in (parse_zoneinfo, parse_pagetypeinfo, parse_vmstat):
        try:
            parse(text)
        except ProcParseError:
            pass


@_ANY
@given(st.data())
def test_mutated_real_text_raises_only_procparseerror(data):
    src = data.draw(st.sampled_from([ZONEINFO_61, PAGETYPEINFO_61, VMSTAT_61, BUDDYINFO_61]))
    i = data.draw(st.integers(0, len(src)))
    j = data.draw(st.integers(i, min(len(src), i + 40)))
    repl = data.draw(st.text(max_size=8))
    text = src[:i] + repl + src[j:]
    try:
        snapshot_from_texts(zoneinfo=text if src is ZONEINFO_61 else ZONEINFO_61,
                            pagetypeinfo=text if src is PAGETYPEINFO_61 else PAGETYPEINFO_61,
                            buddyinfo=text if src is BUDDYINFO_61 else BUDDYINFO_61,
                            vmstat=text if src is VMSTAT_61 else VMSTAT_61,
                            kernel="6.1", reporting_order=9)
    except ProcParseError:
        pass


# ---- real captures: tests/data/**/{zoneinfo,pagetypeinfo,buddyinfo,vmstat,kernel_release,page_reporting_order}

def _capture_dirs():
    if not DATA.is_dir():
        return []
    return sorted(p.parent for p in DATA.rglob("zoneinfo"))


def read_capture(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in d.iterdir() if p.is_file()}


@pytest.mark.parametrize("d", _capture_dirs(), ids=lambda d: str(d.relative_to(DATA)))
def test_real_captures(d):
    s = snapshot_from_capture(read_capture(d))
    assert s.populated_zones()
    assert s.pagetypes.pageblock_order == 9 and s.pagetypes.nr_orders == 11
    for z in s.populated_zones():
        assert z.start_pfn is not None and z.min <= z.low <= z.high and z.managed <= z.present <= z.spanned
        assert len(z.pagesets) >= 1 and z.protection[0] == 0
    for b in s.buddy:
        per_type = s.free_counts(b.node, b.zone)
        # files are read one after the other: allow a little drift between buddyinfo and pagetypeinfo
        for o, total in enumerate(b.free):
            assert abs(sum(c[o] for c in per_type.values()) - total) <= max(16, total // 50)
        z = s.zone(b.node, b.zone)
        # buddyinfo pages vs NR_FREE_PAGES, read at other instants
        assert abs(b.pages_at_or_above(0) - z.free) <= max(4096, z.free // 50)


def test_real_capture_dirs_found():
    """The repository ships 6.1 and 6.12 captures; if they move, this says so instead of skipping."""
    kernels = {snapshot_from_capture(read_capture(d)).kernel for d in _capture_dirs()}
    assert any(k.startswith("6.1.") for k in kernels) and any(k.startswith("6.12.") for k in kernels)


def test_capture_without_release_is_refused():
    with pytest.raises(ProcParseError):
        snapshot_from_capture({"zoneinfo": ZONEINFO_61, "pagetypeinfo": PAGETYPEINFO_61,
                               "buddyinfo": BUDDYINFO_61, "vmstat": VMSTAT_61})
    with pytest.raises(ProcParseError):
        snapshot_from_capture({"zoneinfo": ZONEINFO_61, "pagetypeinfo": PAGETYPEINFO_61,
                               "buddyinfo": BUDDYINFO_61, "vmstat": VMSTAT_61,
                               "kernel_release": "6.1.0-50-amd64\n", "page_reporting_order": "nine"})
