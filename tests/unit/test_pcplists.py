"""The per-cpu lists' reader: BTF offsets, the walk's output, and stored real walks."""
import re
import struct
from pathlib import Path

import pytest

from harness.measure import btf, pcplists, perblock, procfs
from harness.model import release

DATA = Path(__file__).resolve().parents[1] / "data" / "pcp"


class Encoder:
    """Builds BTF bytes (Documentation/bpf/btf.rst) from a few types, to test the parser."""

    def __init__(self):
        self.strings = b"\0"
        self.types = b""
        self.next_id = 1

    def name(self, s: str) -> int:
        if not s:
            return 0
        off = len(self.strings)
        self.strings += s.encode() + b"\0"
        return off

    def add(self, kind: int, name: str, sot: int, vlen: int = 0, extra: bytes = b"") -> int:
        self.types += struct.pack("<III", self.name(name), (kind << 24) | vlen, sot) + extra
        self.next_id += 1
        return self.next_id - 1

    def int_(self, name: str, size: int) -> int:
        return self.add(1, name, size, extra=struct.pack("<I", size * 8))

    def struct_(self, name: str, size: int, members, kind: int = 4) -> int:
        extra = b"".join(struct.pack("<III", self.name(n), t, off * 8) for n, t, off in members)
        return self.add(kind, name, size, len(members), extra)

    def bytes(self) -> bytes:
        hdr = struct.pack("<HBBIIIII", btf.MAGIC, 1, 0, 24, 0, len(self.types), len(self.types), len(self.strings))
        return hdr + self.types + self.strings


def kernel_like(pcp_list: bool = True) -> bytes:
    """struct page with its list link inside an anonymous struct in an anonymous union, as
    include/linux/mm_types.h has it; per_cpu_pages, zone, pglist_data and enum zone_type."""
    e = Encoder()
    ulong = e.int_("long unsigned int", 8)
    int_ = e.int_("int", 4)
    lh = e.next_id                                   # its pointer type comes right after it
    e.struct_("list_head", 16, [("next", lh + 1, 0), ("prev", lh + 1, 8)])
    e.add(2, "", lh)
    inner = e.struct_("", 16, [("pcp_list" if pcp_list else "lru", lh, 0)])
    union = e.struct_("", 40, [("", inner, 0)], kind=5)
    e.struct_("page", 64, [("flags", ulong, 0), ("", union, 8)])
    arr = e.add(3, "", 0, extra=struct.pack("<III", lh, int_, 14))
    pcp = e.struct_("per_cpu_pages", 256, [("lock", int_, 0), ("count", int_, 4), ("lists", arr, 24)])
    pcpptr = e.add(2, "", pcp)
    zone = e.struct_("zone", 1536, [("watermark", ulong, 0), ("per_cpu_pageset", pcpptr, 104)])
    zarr = e.add(3, "", 0, extra=struct.pack("<III", zone, int_, 5))
    e.struct_("pglist_data", 8000, [("node_zones", zarr, 0)])
    names = ["ZONE_DMA", "ZONE_DMA32", "ZONE_NORMAL", "ZONE_MOVABLE", "ZONE_DEVICE"]
    e.add(6, "zone_type", 4, len(names), b"".join(struct.pack("<Ii", e.name(n), i) for i, n in enumerate(names)))
    return e.bytes()


def test_layout_from_btf_follows_anonymous_members():
    lay = pcplists.layout(btf.parse(kernel_like()))
    assert (lay.page_size, lay.link, lay.count, lay.lists, lay.nlists) == (64, 8, 4, 24, 14)
    assert (lay.node_zones, lay.zone_size, lay.zone_pcp) == (0, 1536, 104)
    assert lay.zone("DMA32") == 1 and lay.zone("Normal") == 2


def test_layout_takes_lru_before_pcp_list_existed():
    assert pcplists.layout(btf.parse(kernel_like(pcp_list=False))).link == 8


def test_bad_btf_is_a_one_line_error():
    with pytest.raises(btf.BtfError, match="magic"):
        btf.parse(b"\0" * 32)
    with pytest.raises(btf.BtfError, match="no struct"):
        btf.parse(kernel_like()).struct("folio")


def test_pindex_order_follows_order_to_pindex():
    assert release.pindex_order(0, 14) == (0, 0)
    assert release.pindex_order(1, 14) == (0, 1)
    assert release.pindex_order(5, 14) == (1, 2)
    assert release.pindex_order(11, 14) == (3, 2)
    assert release.pindex_order(13, 14) == (9, 1)
    assert release.pindex_order(12, 13) == (9, None)


def test_kallsyms_needs_the_symbols_and_their_addresses():
    text = ("ffffffff8f000000 D __per_cpu_offset\nffffffff8f100000 D node_data\n"
            "ffffffff8f200000 D vmemmap_base\nffffffff8f300000 T other\n")
    assert pcplists.parse_kallsyms(text) == {"__per_cpu_offset": 0xffffffff8f000000,
                                             "node_data": 0xffffffff8f100000, "vmemmap_base": 0xffffffff8f200000}
    with pytest.raises(pcplists.PcpReadError, match="missing"):
        pcplists.parse_kallsyms("ffffffff8f000000 D __per_cpu_offset\n")
    with pytest.raises(pcplists.PcpReadError, match="kptr_restrict"):
        pcplists.parse_kallsyms(re.sub(r"^\w+", "0" * 16, text, flags=re.MULTILINE))


def test_targets_argv_names_each_list_set():
    lay = pcplists.layout(btf.parse(kernel_like()))
    t = pcplists.Targets(lay, 0xfff0899400000000, (("DMA32/0", 0xff338f31be238640),))
    assert t.argv() == "--pcp 0xfff0899400000000 64 8 4 24 14 DMA32/0=0xff338f31be238640"


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_stored_walks_hold_every_counted_page(kernel):
    """A real walk: each list set's pages, order by list index, add up to its count read just
    before (a wrong order per list, or a list walked twice, would not)."""
    scan = perblock.parse_scan((DATA / f"e2epfn4_{kernel}.txt").read_text())
    assert scan.version == 4 and scan.pcp
    busy = [r for r in scan.pcp if r.count]
    assert busy and all(r.pages() == r.count and not r.broken for r in scan.pcp)
    pfns = [p for r in scan.pcp for li in r.lists for p in li]
    assert len(pfns) == len(set(pfns)), "a page on two lists"
    flagless = {p for c, s, n in scan.runs if c == "P" for p in range(s, s + n)}
    order0 = [p for r in scan.pcp for i, li in enumerate(r.lists) if release.pindex_order(i, len(r.lists))[0] == 0
              for p in li]
    assert sum(p in flagless for p in order0) >= 0.95 * len(order0), "a per-cpu page carries no kpageflags flag"


def test_section_parse_errors_are_one_line():
    with pytest.raises(procfs.ProcParseError, match="pcp"):
        pcplists.parse_section(["C DMA32/0 x"])
    with pytest.raises(procfs.ProcParseError, match="pcp"):
        pcplists.parse_section(["L DMA32/0 0 1 2"])          # a list before its count
    assert pcplists.parse_section(["E /proc/kcore"]) == ()
    reads = pcplists.parse_section(["C DMA32/1 3", "L DMA32/1 0 7 6", "L DMA32/1 1", "L DMA32/1 2 9", "X DMA32/1 2"])
    assert reads == (pcplists.PcpRead("DMA32", 1, 3, ((7, 6), (), (9,)), (2,)),)


class _NoBtfGuest:
    """A guest whose kernel has no BTF: every lookup command but the first fails."""

    def __init__(self):
        self.pcp_targets = None

    def run(self, cmd, check=True, timeout=60):
        from harness.vm.ssh import Result
        if cmd.startswith("cat /proc/version"):
            return Result(cmd, 0, "Linux version 6.1.0-57-amd64 (fake)\n", "")
        return Result(cmd, 1, "", "base64: can't open '/sys/kernel/btf/vmlinux': No such file or directory")


def test_a_kernel_without_btf_gets_captures_without_the_walk(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    g = _NoBtfGuest()
    assert perblock.pcp_argv(g) == [] and "base64 exited 1" in g.pcp_targets
    assert "per-cpu lists not read" in capsys.readouterr().out
    assert perblock.pcp_argv(g) == []                      # found out once


def test_a_walked_page_that_was_not_flagless_drops_its_list_set():
    """A page that moved between the scan and the walk would be freed twice by the model."""
    from harness.model.release import ZoneState
    from harness.verdict.prediction import pcp_contents
    scan = perblock.parse_scan((DATA / "e2epfn4_6.1.txt").read_text())
    zones = (ZoneState(0, "DMA32", 4096, 262112, 0, 0, 0), ZoneState(0, "DMA", 1, 4096, 0, 0, 0))
    walked = pcp_contents(scan, zones)
    assert {(c.zone, c.cpu) for c in walked} >= {("0/DMA32", 0), ("0/DMA32", 1)}
    busy = next(r for r in scan.pcp if r.zone == "DMA32" and r.cpu == 0)
    taken = next(st for c, st, n in scan.runs if c == "A")    # a page in use at the scan
    moved = busy.__class__(busy.zone, busy.cpu, busy.count, (busy.lists[0][:-1] + (taken,),) + busy.lists[1:])
    scan2 = scan.__class__(**{**scan.__dict__, "pcp": tuple(moved if r is busy else r for r in scan.pcp)})
    assert ("0/DMA32", 0) not in {(c.zone, c.cpu) for c in pcp_contents(scan2, zones)}
