"""Pure parsers of a guest's /proc/zoneinfo, /proc/pagetypeinfo, /proc/vmstat into a Snapshot.

Formats follow mm/vmstat.c (6.1 and 6.12): zoneinfo_show_print,
pagetypeinfo_showfree_print, pagetypeinfo_showblockcount_print, vmstat_show.
Every parser takes the file's text and returns plain frozen data; malformed
text raises ProcParseError (harness.measure.procfs) naming the offending line, never
anything else. The render_* functions print data back in the kernel's own
seq_printf formats: tests and the benchmark use them to build realistic text.

Lines a newer kernel adds (promo watermark, pcp high_min/high_max,
reserved_highatomic ...) are kept in `extra` dicts rather than rejected, so a
capture from a kernel we have not read still parses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from harness.measure.procfs import BuddyZone, ProcParseError, parse_buddyinfo

# include/linux/mmzone.h enum migratetype, in enum order (the order reporting
# walks the lists in: mm/page_reporting.c page_reporting_process_zone).
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")
# include/linux/mmzone.h enum zone_type on x86_64
ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable", "Device")
# mm/vmstat.c pagetypeinfo_showfree_print stops counting a list at 100000
PAGETYPEINFO_CAP = 100000


def _freeze(d: dict) -> Mapping:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class PcpInfo:
    """One 'cpu: N' entry of a zone's pagesets (struct per_cpu_pages)."""
    cpu: int
    count: int
    high: int
    batch: int
    extra: Mapping[str, int] = field(default_factory=lambda: _freeze({}))


@dataclass(frozen=True)
class ZoneInfo:
    """One 'Node N, zone NAME' section of /proc/zoneinfo (values in pages)."""
    node: int
    zone: str
    free: int
    min: int          # min_wmark_pages(): _watermark[WMARK_MIN] + watermark_boost
    low: int
    high: int
    spanned: int
    present: int
    managed: int
    boost: int = 0
    cma: int = 0
    protection: tuple[int, ...] = ()     # zone->lowmem_reserve[]
    start_pfn: int | None = None
    pagesets: tuple[PcpInfo, ...] = ()
    stats: Mapping[str, int] = field(default_factory=lambda: _freeze({}))       # zone vm + numa stats
    node_stats: Mapping[str, int] = field(default_factory=lambda: _freeze({}))  # first populated zone only
    extra: Mapping[str, int] = field(default_factory=lambda: _freeze({}))

    @property
    def key(self) -> tuple[int, str]:
        return (self.node, self.zone)

    @property
    def populated(self) -> bool:
        # include/linux/mmzone.h populated_zone(): present_pages != 0
        return self.present > 0

    @property
    def min_raw(self) -> int:
        """_watermark[WMARK_MIN] without the boost, as __isolate_free_page reads it."""
        return self.min - self.boost

    @property
    def pcp_pages(self) -> int:
        return sum(p.count for p in self.pagesets)

    @property
    def reserved_highatomic(self) -> int:
        # printed only by kernels newer than 6.12; 0 is what a quiet guest has
        return self.extra.get("reserved_highatomic", 0)


@dataclass(frozen=True)
class PageTypeInfo:
    """/proc/pagetypeinfo: free blocks per (node, zone, migratetype, order) and pageblocks per type."""
    pageblock_order: int
    pages_per_block: int
    nr_orders: int
    free: Mapping[tuple[int, str, str], tuple[int, ...]]
    overflow: frozenset            # (node, zone, type, order) printed as '>100000'
    blocks: Mapping[tuple[int, str], Mapping[str, int]]
    types: tuple[str, ...]         # migratetype names in the order the kernel printed them

    def zones(self) -> list[tuple[int, str]]:
        seen: dict = {}
        for (n, z, _t) in self.free:
            seen.setdefault((n, z), None)
        return list(seen)


@dataclass(frozen=True)
class Snapshot:
    """What the model needs to know about a guest at one instant.

    reporting_order is the effective order read from
    /sys/module/page_reporting/parameters/page_reporting_order after the driver
    registered; kernel is the guest's release ("6.1.0-28-amd64", "6.12.95", "6.1").
    """
    zones: tuple[ZoneInfo, ...]
    pagetypes: PageTypeInfo
    buddy: tuple[BuddyZone, ...]
    vmstat: Mapping[str, int]
    kernel: str
    reporting_order: int

    def zone(self, node: int, name: str) -> ZoneInfo:
        for z in self.zones:
            if z.key == (node, name):
                return z
        raise KeyError((node, name))

    def populated_zones(self) -> list[ZoneInfo]:
        return [z for z in self.zones if z.populated]

    def free_counts(self, node: int, zone: str) -> dict[int, tuple[int, ...]]:
        """Free blocks per migratetype index (include/linux/mmzone.h order) per order.

        pagetypeinfo is the per-list truth; a count it capped ('>100000') is
        rebuilt from buddyinfo's total for that order minus the other lists.
        """
        pt = self.pagetypes
        bz = next((b for b in self.buddy if (b.node, b.zone) == (node, zone)), None)
        out: dict[int, list[int]] = {}
        for name in pt.types:
            counts = pt.free.get((node, zone, name))
            if counts is None:
                continue
            out[MIGRATETYPE_NAMES.index(name)] = list(counts)
        for (n, z, name, order) in pt.overflow:
            if (n, z) != (node, zone) or bz is None or order >= len(bz.free):
                continue
            mt = MIGRATETYPE_NAMES.index(name)
            others = sum(c[order] for m, c in out.items() if m != mt)
            out[mt][order] = max(bz.free[order] - others, PAGETYPEINFO_CAP)
        return {m: tuple(c) for m, c in out.items()}

    def free_pages_at_or_above(self, order: int) -> int:
        return sum(b.pages_at_or_above(order) for b in self.buddy)


# ---------------------------------------------------------------- parsing

_INT = re.compile(r"-?\d+")
_ZONE_HEAD = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+)")
_NODE_HEAD = re.compile(r"Node\s+(\d+),\s+per-node stats")
_WMARK_KEYS = ("boost", "min", "low", "high", "promo", "spanned", "present", "managed", "cma")
_TAIL_KEYS = ("node_unreclaimable", "start_pfn", "reserved_highatomic", "free_highatomic")


def _int(s: str, what: str, line: str) -> int:
    if not _INT.fullmatch(s):
        raise ProcParseError(f"{what}: not an integer {s!r} in line {line!r}")
    return int(s)


def zone_label(node: int, zone: str) -> str:
    """'DMA32' on node 0, 'Normal@node1' elsewhere: zones of several nodes share names."""
    return zone if node == 0 else f"{zone}@node{node}"


def parse_zoneinfo(text: str) -> list[ZoneInfo]:
    """/proc/zoneinfo -> one ZoneInfo per zone, populated or not (mm/vmstat.c zoneinfo_show_print)."""
    if not isinstance(text, str):
        raise ProcParseError("zoneinfo: not text")
    zones: list[ZoneInfo] = []
    cur: dict | None = None
    section = ""

    def finish():
        if cur is None:
            return
        need = ("free", "min", "low", "high", "spanned", "present", "managed")
        missing = [k for k in need if k not in cur["v"]]
        if missing:
            raise ProcParseError(f"zoneinfo: zone {cur['node']},{cur['zone']} lacks {', '.join(missing)}")
        v = cur["v"]
        zones.append(ZoneInfo(
            node=cur["node"], zone=cur["zone"], free=v["free"], min=v["min"], low=v["low"],
            high=v["high"], spanned=v["spanned"], present=v["present"], managed=v["managed"],
            boost=v.get("boost", 0), cma=v.get("cma", 0), protection=cur["protection"],
            start_pfn=cur["tail"].get("start_pfn"),
            pagesets=tuple(PcpInfo(p["cpu"], p.get("count", 0), p.get("high", 0), p.get("batch", 0),
                                   _freeze({k: x for k, x in p.items()
                                            if k not in ("cpu", "count", "high", "batch")}))
                           for p in cur["pcp"]),
            stats=_freeze(cur["stats"]), node_stats=_freeze(cur["node_stats"]),
            extra=_freeze({**{k: x for k, x in v.items() if k == "promo"},
                           **{k: x for k, x in cur["tail"].items() if k != "start_pfn"}})))

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _ZONE_HEAD.fullmatch(line)
        if m:
            finish()
            cur = {"node": int(m[1]), "zone": m[2], "v": {}, "protection": (), "pcp": [],
                   "stats": {}, "node_stats": {}, "tail": {}}
            section = "head"
            continue
        if _NODE_HEAD.fullmatch(line):
            # newer kernels print per-node stats as their own section; we keep none of it
            finish()
            cur, section = None, "nodeblock"
            continue
        if section == "nodeblock":
            parts = line.split()
            if len(parts) != 2:
                raise ProcParseError(f"zoneinfo: cannot parse line {line!r}")
            _int(parts[1], "zoneinfo", line)
            continue
        if cur is None:
            raise ProcParseError(f"zoneinfo: line outside a zone: {line!r}")
        if line == "per-node stats":
            section = "node"
            continue
        if line == "pagesets":
            section = "pcp"
            continue
        if line.startswith("protection:"):
            inner = line[len("protection:"):].strip()
            if not (inner.startswith("(") and inner.endswith(")")):
                raise ProcParseError(f"zoneinfo: cannot parse line {line!r}")
            cur["protection"] = tuple(_int(x.strip(), "zoneinfo", line)
                                      for x in inner[1:-1].split(",") if x.strip() != "")
            section = "stats"
            continue
        if line.startswith("pages free"):
            cur["v"]["free"] = _int(line[len("pages free"):].strip(), "zoneinfo", line)
            section = "wmark"
            continue
        if ":" in line:
            key, _, val = line.rpartition(":")
            key = key.strip()
            val = _int(val.strip(), "zoneinfo", line)
            if key == "cpu":
                cur["pcp"].append({"cpu": val})
            elif key == "vm stats threshold":
                if cur["pcp"]:
                    cur["pcp"][-1]["stat_threshold"] = val
            elif key in _TAIL_KEYS or section != "pcp":
                cur["tail"][key] = val
            else:
                if not cur["pcp"] or not key or " " in key:
                    raise ProcParseError(f"zoneinfo: cannot parse line {line!r}")
                cur["pcp"][-1][key] = val
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ProcParseError(f"zoneinfo: cannot parse line {line!r}")
        key, val = parts[0], _int(parts[1], "zoneinfo", line)
        if section == "node":
            cur["node_stats"][key] = val
        elif section == "wmark" and key in _WMARK_KEYS:
            cur["v"][key] = val
        elif section in ("stats", "wmark"):
            cur["stats"][key] = val
        else:
            raise ProcParseError(f"zoneinfo: unexpected line {line!r}")
    finish()
    if not zones:
        raise ProcParseError("zoneinfo: no zones")
    return zones


_PT_ROW = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+),\s+type\s+(\S+)\s+(.*)")
_PT_BLOCKS = re.compile(r"Node\s+(\d+),\s+zone\s+(\S+)\s+(.*)")


def parse_pagetypeinfo(text: str) -> PageTypeInfo:
    """/proc/pagetypeinfo (mm/vmstat.c pagetypeinfo_show and its helpers); one header per node."""
    if not isinstance(text, str):
        raise ProcParseError("pagetypeinfo: not text")
    pb_order = per_block = nr_orders = None
    free: dict = {}
    overflow = set()
    blocks: dict = {}
    block_types: tuple[str, ...] | None = None
    types_seen: dict = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("Page block order:"):
            pb_order = _int(line.split(":", 1)[1].strip(), "pagetypeinfo", line)
            continue
        if line.startswith("Pages per block:"):
            per_block = _int(line.split(":", 1)[1].strip(), "pagetypeinfo", line)
            continue
        if line.startswith("Free pages count per migrate type at order"):
            cols = line[len("Free pages count per migrate type at order"):].split()
            orders = [_int(c, "pagetypeinfo", line) for c in cols]
            if orders != list(range(len(orders))) or not orders:
                raise ProcParseError(f"pagetypeinfo: bad order header {line!r}")
            nr_orders = len(orders)
            continue
        if line.startswith("Number of blocks type"):
            block_types = tuple(line[len("Number of blocks type"):].split())
            if not block_types or any(t not in MIGRATETYPE_NAMES for t in block_types):
                raise ProcParseError(f"pagetypeinfo: unknown migratetype in {line!r}")
            continue
        if line.startswith("Number of mixed blocks"):
            block_types = None  # CONFIG_PAGE_OWNER table: not used by the model
            continue
        m = _PT_ROW.fullmatch(line)
        if m:
            node, zone, mt = int(m[1]), m[2], m[3]
            if mt not in MIGRATETYPE_NAMES:
                raise ProcParseError(f"pagetypeinfo: unknown migratetype {mt!r} in {line!r}")
            if nr_orders is None:
                raise ProcParseError(f"pagetypeinfo: free row before the order header: {line!r}")
            cells = m[4].split()
            if len(cells) != nr_orders:
                raise ProcParseError(f"pagetypeinfo: {len(cells)} columns, expected {nr_orders}: {line!r}")
            counts = []
            for o, c in enumerate(cells):
                if c.startswith(">"):
                    overflow.add((node, zone, mt, o))
                    c = c[1:]
                counts.append(_int(c, "pagetypeinfo", line))
            if (node, zone, mt) in free:
                raise ProcParseError(f"pagetypeinfo: duplicate row {line!r}")
            free[(node, zone, mt)] = tuple(counts)
            types_seen.setdefault(mt, None)
            continue
        m = _PT_BLOCKS.fullmatch(line)
        if m and block_types is not None:
            cells = m[3].split()
            if len(cells) != len(block_types):
                raise ProcParseError(f"pagetypeinfo: {len(cells)} block counts, expected {len(block_types)}: {line!r}")
            blocks[(int(m[1]), m[2])] = _freeze({t: _int(c, "pagetypeinfo", line)
                                                 for t, c in zip(block_types, cells)})
            continue
        if m and block_types is None and line.startswith("Node"):
            continue  # a mixed-blocks row
        raise ProcParseError(f"pagetypeinfo: cannot parse line {line!r}")
    if pb_order is None or per_block is None or nr_orders is None:
        raise ProcParseError("pagetypeinfo: missing header (page block order, pages per block, orders)")
    if per_block != 1 << pb_order:
        raise ProcParseError(f"pagetypeinfo: {per_block} pages per block does not match order {pb_order}")
    if not free:
        raise ProcParseError("pagetypeinfo: no free counts")
    types = tuple(t for t in MIGRATETYPE_NAMES if t in types_seen)
    return PageTypeInfo(pb_order, per_block, nr_orders, _freeze(free), frozenset(overflow),
                        _freeze(blocks), types)


def parse_vmstat(text: str) -> dict[str, int]:
    """/proc/vmstat: 'name value' per line (mm/vmstat.c vmstat_show)."""
    if not isinstance(text, str):
        raise ProcParseError("vmstat: not text")
    out = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        parts = raw.split()
        if len(parts) != 2:
            raise ProcParseError(f"vmstat: cannot parse line {raw!r}")
        out[parts[0]] = _int(parts[1], "vmstat", raw)
    if not out:
        raise ProcParseError("vmstat: empty")
    return out


def snapshot_from_texts(*, zoneinfo: str, pagetypeinfo: str, buddyinfo: str, vmstat: str,
                        kernel: str, reporting_order: int) -> Snapshot:
    """Parse the four files of one instant and check they describe the same zones."""
    zones = parse_zoneinfo(zoneinfo)
    pt = parse_pagetypeinfo(pagetypeinfo)
    try:
        buddy = parse_buddyinfo(buddyinfo)
    except (ValueError, IndexError) as e:  # procfs raises ProcParseError, itself a ValueError
        raise ProcParseError(str(e)) from None
    vm = parse_vmstat(vmstat)
    if not isinstance(reporting_order, int) or not 0 <= reporting_order < pt.nr_orders:
        raise ProcParseError(f"reporting order {reporting_order!r} outside 0..{pt.nr_orders - 1}")
    zkeys = {z.key for z in zones}
    for b in buddy:
        if (b.node, b.zone) not in zkeys:
            raise ProcParseError(f"buddyinfo zone {b.node},{b.zone} missing from zoneinfo")
        if len(b.free) != pt.nr_orders:
            raise ProcParseError(f"buddyinfo zone {b.node},{b.zone}: {len(b.free)} orders, "
                                 f"pagetypeinfo has {pt.nr_orders}")
    for key in pt.zones():
        if key not in zkeys:
            raise ProcParseError(f"pagetypeinfo zone {key} missing from zoneinfo")
    return Snapshot(tuple(zones), pt, tuple(buddy), _freeze(vm), str(kernel), reporting_order)


CAPTURE_FILES = ("zoneinfo", "pagetypeinfo", "buddyinfo", "vmstat")


def snapshot_from_capture(files: Mapping[str, str], *, kernel: str | None = None,
                          reporting_order: int | None = None) -> Snapshot:
    """A Snapshot from one capture's files by name: the four /proc files plus
    'kernel_release' (uname -r) and 'page_reporting_order' (sysfs), unless given."""
    missing = [n for n in CAPTURE_FILES if n not in files]
    if missing:
        raise ProcParseError(f"capture lacks {', '.join(missing)}")
    if kernel is None:
        kernel = files.get("kernel_release", "").strip()
        if not kernel:
            raise ProcParseError("capture lacks kernel_release")
    if reporting_order is None:
        text = files.get("page_reporting_order", "").strip()
        if not _INT.fullmatch(text):
            raise ProcParseError(f"page_reporting_order: not an integer {text[:40]!r}")
        reporting_order = int(text)
    return snapshot_from_texts(**{n: files[n] for n in CAPTURE_FILES}, kernel=kernel,
                               reporting_order=reporting_order)


# ---------------------------------------------------------------- rendering

def _version(kernel: str) -> tuple[int, int]:
    m = re.match(r"\s*(\d+)\.(\d+)", str(kernel))
    if not m:
        raise ValueError(f"cannot read a kernel version from {kernel!r}")
    return int(m[1]), int(m[2])


def _is_new_pcp_format(kernel: str) -> bool:
    # 'high_min'/'high_max' and aligned pcp columns arrived after 6.12 (unverified exactly when)
    return _version(kernel) >= (6, 13)


def render_zoneinfo(zones: list[ZoneInfo], kernel: str = "6.1") -> str:
    """Print zones the way mm/vmstat.c zoneinfo_show_print does (6.1 layout; 6.12 adds 'promo')."""
    v = _version(kernel)
    out = []
    first_populated: set = set()
    for z in zones:
        if z.populated and z.node not in {n for n, _ in first_populated}:
            first_populated.add((z.node, z.zone))
    for z in zones:
        s = [f"Node {z.node}, zone {z.zone:>8}"]
        if (z.node, z.zone) in first_populated and z.node_stats:
            s.append("\n  per-node stats")
            s += [f"\n      {k:<12} {x}" for k, x in z.node_stats.items()]
        s.append(f"\n  pages free     {z.free}"
                 f"\n        boost    {z.boost}"
                 f"\n        min      {z.min}"
                 f"\n        low      {z.low}"
                 f"\n        high     {z.high}")
        if v >= (6, 12):
            s.append(f"\n        promo    {z.extra.get('promo', z.high)}")
        s.append(f"\n        spanned  {z.spanned}"
                 f"\n        present  {z.present}"
                 f"\n        managed  {z.managed}"
                 f"\n        cma      {z.cma}")
        prot = z.protection or (0,)
        s.append(f"\n        protection: ({prot[0]}" + "".join(f", {p}" for p in prot[1:]) + ")")
        if not z.populated:
            out.append("".join(s) + "\n")
            continue
        s += [f"\n      {k:<12} {x}" for k, x in z.stats.items()]
        s.append("\n  pagesets")
        for p in z.pagesets:
            if _is_new_pcp_format(kernel):
                s.append(f"\n    cpu: {p.cpu}"
                         f"\n              count:    {p.count}"
                         f"\n              high:     {p.high}"
                         f"\n              batch:    {p.batch}"
                         f"\n              high_min: {p.extra.get('high_min', p.high)}"
                         f"\n              high_max: {p.extra.get('high_max', p.high)}")
            else:
                s.append(f"\n    cpu: {p.cpu}"
                         f"\n              count: {p.count}"
                         f"\n              high:  {p.high}"
                         f"\n              batch: {p.batch}")
            s.append(f"\n  vm stats threshold: {p.extra.get('stat_threshold', 0)}")
        s.append(f"\n  node_unreclaimable:  0"
                 f"\n  start_pfn:           {z.start_pfn or 0}")
        out.append("".join(s) + "\n")
    return "".join(out)


def render_pagetypeinfo(pt: PageTypeInfo) -> str:
    """Print the way mm/vmstat.c pagetypeinfo_show does, one header per node."""
    out = []
    nodes = sorted({n for (n, _z, _t) in pt.free})
    for node in nodes:
        out.append(f"Page block order: {pt.pageblock_order}\n")
        out.append(f"Pages per block:  {pt.pages_per_block}\n\n")
        out.append(f"{'Free pages count per migrate type at order':<43} "
                   + "".join(f"{o:6d} " for o in range(pt.nr_orders)) + "\n")
        for (n, z) in pt.zones():
            if n != node:
                continue
            for t in pt.types:
                counts = pt.free.get((n, z, t))
                if counts is None:
                    continue
                cells = "".join(f"{'>' if (n, z, t, o) in pt.overflow else ''}{c:6d} "
                                for o, c in enumerate(counts))
                out.append(f"Node {n:4d}, zone {z:>8}, type {t:>12} {cells}\n")
        out.append(f"\n{'Number of blocks type ':<23}" + "".join(f"{t:>12} " for t in pt.types) + "\n")
        for (n, z), b in pt.blocks.items():
            if n == node:
                out.append(f"Node {n}, zone {z:>8} " + "".join(f"{b.get(t, 0):12d} " for t in pt.types) + "\n")
    return "".join(out)


def render_buddyinfo(pt: PageTypeInfo) -> str:
    """/proc/buddyinfo from the per-type counts (mm/vmstat.c frag_show_print)."""
    out = []
    for (n, z) in pt.zones():
        tot = [0] * pt.nr_orders
        for t in pt.types:
            for o, c in enumerate(pt.free.get((n, z, t), ())):
                tot[o] += c
        out.append(f"Node {n}, zone {z:>8} " + "".join(f"{c:6d} " for c in tot) + "\n")
    return "".join(out)


def render_vmstat(vm: Mapping[str, int]) -> str:
    return "".join(f"{k} {v}\n" for k, v in vm.items())
