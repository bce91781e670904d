"""Per-block truth: the guest's free blocks, reported or not, joined with the host's residency of their pages.

API (a scenario calls capture() at its moments, then the pure functions):

    ranges = pagemap.layout(guest)                 # once per guest (optional; capture() derives it)
    perblock.wait_reported(guest, order, ranges)   # optional: until nothing reportable is left unreported
    a = perblock.capture(guest, order, ranges)     # right after the free
    b = perblock.capture(guest, order, ranges)     # once host RSS has settled
    perblock.violations(a, b, reporting)  -> list[Violation]   (each explains its block)
    perblock.check(a, b, reporting)       raises InvariantViolation (an AssertionError) listing them
    perblock.summary(a, b, reporting)     -> dict   (JSON-serializable: the result's `per_block` section)
    Capture.to_json() / Capture.from_json()        (captures saved for the unit tests)

One capture = one guest scan (guest_images/src/e2epfn.c: /proc/kpageflags run-length
encoded, with /proc/zoneinfo and /proc/buddyinfo around it) and, right after the SSH
command returns, one host read of QEMU's pagemap over guest RAM (harness/measure/pagemap.py).

Classes of guest RAM pages (join): allocated (not free, including per-cpu lists and pages
isolated for a report in flight), reserved (PG_reserved), free_below_order, free_unreported
(free blocks of order >= the reporting order not marked), reported.

Guest rules (read for Linux 6.1 in the sources named; measured the same on 6.1.176 and
6.12.117: inferred blocks equal /proc/buddyinfo at every order in every capture):
- fs/proc/page.c stable_page_flags sets KPF_BUDDY on every page of a free block: the
  head through PageBuddy, the tails through is_free_buddy_page. So a run of BUDDY pages
  is a run of whole free blocks; the buddy allocator merges every free pair of buddies
  (mm/page_alloc.c __free_one_page), so the run splits into the largest aligned blocks,
  of order at most 10 (MAX_ORDER - 1 on 6.1, MAX_PAGE_ORDER on 6.12), never across a zone.
- A BUDDY page that also carries KPF_UPTODATE is the head of a reported block: PG_reported
  aliases PG_uptodate (include/linux/page-flags.h), set only by page_reporting_drain
  (mm/page_reporting.c) on the head, and cleared when the block is allocated or merged
  (del_page_from_free_list). Such a head always starts a block, so runs are also cut there.
- Pages isolated for a report in flight, and pages on per-cpu lists, are not BUDDY: they
  count as allocated.
- Zones come from /proc/zoneinfo (start_pfn, spanned), not from fixed PFN limits.
Each capture cross-checks the inferred blocks with /proc/buddyinfo read just before and
just after the scan (buddyinfo_mismatches).

Why the order guest scan -> host read makes "reported means absent" race-free:
page_reporting_drain marks a block only after the device acknowledged the report, and
QEMU acknowledges after discarding (hw/virtio/virtio-balloon.c virtio_balloon_handle_report:
ram_block_discard_range, then virtqueue_push). So a block seen reported was already
discarded before the host read began. The one benign race left: the guest allocates and
writes the block between its scan and the host read. capture() therefore takes a second
capture at once when the first shows a reported block the host holds; a violation must
persist in it (same block still reported and still held). QEMU skips the discard and still
acknowledges when the guest poisons free pages (poison_val != 0) or discard is inhibited:
exactly what the invariants catch.

Not invariants, on purpose: "allocated pages are held" (an allocated page the guest never
wrote is absent; with anonymous RAM, host THPs hide that by faulting 2 MiB at a time, with
memfd a few hundred such pages show) and "every free block >= order gets reported" (the
zone gate keeps ZONE_DMA's out; `pending` names the rest).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from functools import cached_property

from harness.measure import btf, pagemap, pcplists, procfs
from harness.model.reporting import ReportingParams, zone_gate_mark
from harness.measure.pagemap import RamRange
from harness.measure.snapshot import ZoneInfo, parse_zoneinfo, zone_label

MAX_ORDER = 10  # largest buddy order on x86_64, 6.1 and 6.12
PAGE_REPORTING_CAPACITY = 32  # mm/page_reporting.h
CLASSES = ("allocated", "reserved", "free_below_order", "free_unreported", "reported")
VIOLATIONS_SHOWN = 20  # summary() lists this many violations in full; the rest are counted
# wait_reported: pending blocks this few, unchanged this long (two 2 s delays and a pass), are
# left for the next release to get reported
STUCK_MAX_BLOCKS = 4
STUCK_S = 5.0


@dataclass(frozen=True)
class Zone:
    name: str
    start: int  # pfn
    end: int  # pfn, exclusive
    free: int = 0  # pages, at the scan
    low: int = 0  # low watermark, pages

    def gated(self, order: int) -> bool:
        """True if the reporting worker skips this zone: mm/page_reporting.c
        page_reporting_process_zone needs zone_watermark_ok(low + (32 << order)).
        (Approximate: ignores the unusable highatomic/CMA free pages.) ZONE_DMA, 4095 pages
        on x86_64, always is at order >= 7."""
        return self.free <= zone_gate_mark(self.low, order, PAGE_REPORTING_CAPACITY)


@dataclass(frozen=True)
class Block:
    head: int
    order: int
    reported: bool
    zone: str

    @property
    def pages(self) -> int:
        return 1 << self.order

    @property
    def end(self) -> int:
        return self.head + self.pages


@dataclass(frozen=True)
class Scan:
    """The guest's side of a capture, parsed from e2epfn's output."""
    runs: tuple[tuple[str, int, int], ...]  # (class, start pfn, pages): N, H, F, R, T, A, P (see e2epfn.c)
    zones: tuple[Zone, ...]
    buddy_before: tuple[procfs.BuddyZone, ...]
    buddy_after: tuple[procfs.BuddyZone, ...]
    pfns: int
    scan_us: float
    version: int = 3                        # 1: flagless in A (no P class); 2: page tables too (no T); 3: no pcp walk
    zoneinfo: tuple[ZoneInfo, ...] = ()    # /proc/zoneinfo as the scan began, parsed
    # every per-cpu list, walked right after the scan (version 4 with --pcp); None: not walked
    pcp: tuple[pcplists.PcpRead, ...] | None = None

    @property
    def pcps(self) -> tuple[tuple[str, int, int, int], ...]:
        """(zone label, cpu, count, high) of every per-cpu list of a populated zone: which of
        6.12's decay ticks the layout after a release had passed (prediction.layout_at_capture)."""
        return tuple((zone_label(z.node, z.zone), p.cpu, p.count, p.high) for z in self.zoneinfo
                     if z.start_pfn is not None for p in z.pagesets)

    def flagless_blocks(self, order: int) -> tuple[int, ...] | None:
        """Heads of the 2^order blocks of runs of flagless pages (P) that begin and end on a
        block boundary: THPs on a per-cpu THP list look so. A flagless run that does not
        (the kernel's own pages near the top of RAM, 2127 of them in a 2 GiB guest, and some
        low ones) is left out. None: a version 1 scan, which did not tell them apart."""
        if self.version < 2:
            return None
        size, heads, run_start, run_end = 1 << order, [], None, None
        for c, start, n in list(self.runs) + [("", -1, 0)]:
            if c == "P" and run_end == start:
                run_end = start + n
                continue
            if run_start is not None and run_start % size == 0 and run_end % size == 0:
                heads.extend(range(run_start, run_end, size))
            run_start, run_end = (start, start + n) if c == "P" else (None, None)
        return tuple(heads)


# --- parsing (pure) ------------------------------------------------------------

def parse_zones(zoneinfo: str) -> tuple[Zone, ...]:
    """/proc/zoneinfo -> populated zones, through the one zoneinfo parser (harness/measure/snapshot.py).
    mm/vmstat.c zoneinfo_show_print prints start_pfn only for populated zones."""
    return _zones(parse_zoneinfo(zoneinfo))


def _zones(infos) -> tuple[Zone, ...]:
    zones = [Zone(zone_label(z.node, z.zone), z.start_pfn, z.start_pfn + z.spanned, z.free, z.low)
             for z in infos if z.start_pfn is not None and z.spanned]
    if not zones:
        raise procfs.ProcParseError("zoneinfo: no populated zone with start_pfn and spanned")
    return tuple(zones)


def parse_scan(text: str) -> Scan:
    """Pure: e2epfn's output -> Scan. Raises ProcParseError on a truncated or foreign text."""
    if not text.startswith(("e2epfn 1\n", "e2epfn 2\n", "e2epfn 3\n", "e2epfn 4\n")):
        raise procfs.ProcParseError(f"e2epfn: unexpected header {text[:40]!r}")
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines()[1:]:
        if line.startswith("== "):
            sections.append((line[3:], []))
        elif line.startswith("!! ") or not sections:
            raise procfs.ProcParseError(f"e2epfn: {line}")
        else:
            sections[-1][1].append(line)
    names = [n.split()[0] for n, _ in sections]
    pcp = None
    if names[3:4] == ["pcp"]:
        pcp = pcplists.parse_section(sections[3][1]) or None
        del sections[3], names[3]
    if names != ["buddyinfo", "zoneinfo", "runs", "buddyinfo", "end"]:
        raise procfs.ProcParseError(f"e2epfn: sections {names} (truncated output?)")
    try:
        end = dict(kv.split("=") for kv in sections[4][0].split()[1:])
        runs = []
        for line in sections[2][1]:
            c, start, n = line.split()
            if c not in "NHFRTAP" or len(c) != 1:
                raise ValueError(c)
            runs.append((c, int(start), int(n)))
        pfns, scan_us = int(end["pfns"]), float(end["scan_us"])
    except (ValueError, KeyError) as e:
        raise procfs.ProcParseError(f"e2epfn: malformed runs or end line ({e})") from None
    infos = parse_zoneinfo("\n".join(sections[1][1]))
    return Scan(
        runs=tuple(runs),
        zones=_zones(infos),
        zoneinfo=tuple(infos),
        buddy_before=tuple(procfs.parse_buddyinfo("\n".join(sections[0][1]))),
        buddy_after=tuple(procfs.parse_buddyinfo("\n".join(sections[3][1]))),
        pfns=pfns, scan_us=scan_us, version=int(text.split("\n", 1)[0].split()[1]), pcp=pcp)


# --- the guest's blocks (pure) -------------------------------------------------

def split_aligned(start: int, end: int, max_order: int = MAX_ORDER):
    """[start, end) -> (head, order) of the largest naturally aligned blocks, in order."""
    p = start
    while p < end:
        o = max_order
        while o and (p & ((1 << o) - 1) or p + (1 << o) > end):
            o -= 1
        yield p, o
        p += 1 << o


def infer_blocks(runs, zones, max_order: int = MAX_ORDER) -> list[Block]:
    """Free runs (F/H) -> blocks. Cuts at zone limits and at every reported head (H)."""
    cuts = sorted({z.start for z in zones} | {z.end for z in zones})
    segments: list[tuple[int, int, bool]] = []  # (start, end, first block reported)
    for c, start, n in runs:
        if c not in "FH":
            continue
        if c == "H" or not segments or segments[-1][1] != start:
            segments.append((start, start + n, c == "H"))
        else:
            s, _, rep = segments[-1]
            segments[-1] = (s, start + n, rep)
    blocks = []
    for start, end, reported in segments:
        edges = [start] + [x for x in cuts if start < x < end] + [end]
        for i, (a, b) in enumerate(zip(edges, edges[1:])):
            zone = zone_of(zones, a)
            for j, (head, order) in enumerate(split_aligned(a, b, max_order)):
                blocks.append(Block(head, order, reported and i == 0 and j == 0, zone))
    return blocks


def zone_of(zones, pfn: int) -> str:
    for z in zones:
        if z.start <= pfn < z.end:
            return z.name
    return "none"


def buddyinfo_mismatches(blocks, scan: Scan, min_order: int) -> list[dict]:
    """Zone/order pairs (order >= min_order) where the inferred block count lies outside
    what /proc/buddyinfo said just before and just after the scan."""
    counts: dict[tuple[str, int], int] = {}
    for b in blocks:
        counts[b.zone, b.order] = counts.get((b.zone, b.order), 0) + 1
    out = []
    for before, after in zip(scan.buddy_before, scan.buddy_after):
        zone = zone_label(before.node, before.zone)
        for o in range(min_order, len(before.free)):
            got = counts.get((zone, o), 0)
            lo, hi = sorted((before.free[o], after.free[o]))
            if not lo <= got <= hi:
                out.append({"zone": zone, "order": o, "inferred": got,
                            "buddyinfo_before": before.free[o], "buddyinfo_after": after.free[o]})
    return out


# --- a capture -----------------------------------------------------------------

@dataclass
class Capture:
    text: str  # e2epfn output, raw
    ranges: list[RamRange]  # guest RAM as the host sees it
    held: bytearray  # held[pfn] = 1 if the host holds the page (pagemap present or swapped)
    order: int  # the reporting order the classes use
    timing: dict = field(default_factory=dict)
    recheck: "Capture | None" = None  # a second capture, taken at once when this one showed reported blocks held

    @cached_property
    def scan(self) -> Scan:
        return parse_scan(self.text)

    @cached_property
    def blocks(self) -> list[Block]:
        return infer_blocks(self.scan.runs, self.scan.zones)

    @cached_property
    def block_set(self) -> frozenset[Block]:
        return frozenset(self.blocks)

    def held_in(self, start: int, end: int) -> int:
        return self.held[start:end].count(1)

    def to_json(self) -> dict:
        return {"version": 1, "order": self.order, "timing": self.timing,
                "ranges": [[r.pfn, r.pages, r.hva] for r in self.ranges],
                "held_runs": _runs_of_ones(self.held), "e2epfn": self.text,
                "recheck": self.recheck.to_json() if self.recheck else None}

    @classmethod
    def from_json(cls, d: dict) -> "Capture":
        ranges = [RamRange(*r) for r in d["ranges"]]
        held = bytearray(max(r.end for r in ranges))
        for start, n in d["held_runs"]:
            held[start:start + n] = b"\1" * n
        return cls(d["e2epfn"], ranges, held, d["order"], d["timing"],
                   cls.from_json(d["recheck"]) if d.get("recheck") else None)


def _runs_of_ones(b: bytearray) -> list[list[int]]:
    return [[m.start(), m.end() - m.start()] for m in re.finditer(rb"\x01+", b)]


def pcp_argv(guest) -> list[str]:
    """The capture's `--pcp` arguments, worked out once per guest (Run does it as a run
    starts, before anything is measured); none where its kernel does not let us read its
    lists (no BTF, kallsyms hidden, /proc/kcore locked down): the scan goes on without them
    and the model keeps its terms for the lists' contents."""
    if getattr(guest, "pcp_targets", None) is None:
        try:
            guest.pcp_targets = pcplists.locate(guest, guest.run("cat /proc/zoneinfo").stdout)
        except (pcplists.PcpReadError, btf.BtfError, procfs.ProcParseError) as e:
            guest.pcp_targets = str(e)
            print(f"note: per-cpu lists not read: {e}", flush=True)
    t = guest.pcp_targets
    return [] if isinstance(t, str) else t.argv().split()


def capture(guest, order: int, ranges: list[RamRange] | None = None, recheck: bool = True) -> Capture:
    """Guest scan, then host read, back to back; a second capture if reported blocks look held."""
    ranges = ranges or pagemap.layout(guest)
    t0 = time.monotonic()
    text = guest.run(" ".join(["e2epfn", *pcp_argv(guest)])).stdout
    t1 = time.monotonic()
    held = pagemap.read_held(guest.pid, ranges)
    t2 = time.monotonic()
    cap = Capture(text, ranges, held, order)
    cap.timing = {
        "scan_ms": round(cap.scan.scan_us / 1000, 1),  # the kpageflags read, in the guest
        "ssh_ms": round((t1 - t0) * 1000, 1),  # the whole guest command, round trip
        "read_ms": round((t2 - t1) * 1000, 1),  # the host pagemap read
        # any page was read by the host at most this long after the guest read it (never before)
        "skew_max_ms": round((t2 - t0) * 1000, 1),
    }
    if recheck and _reported_held(cap):
        cap.recheck = capture(guest, order, ranges, recheck=False)
    return cap


def pending(cap: Capture) -> list[Block]:
    """Unreported free blocks of order >= the capture's order in zones the reporting worker
    does not skip (Zone.gated): what the next passes would still report."""
    gated = {z.name for z in cap.scan.zones if z.gated(cap.order)}
    return [b for b in cap.blocks if not b.reported and b.order >= cap.order and b.zone not in gated]


# page_reporting_cycle re-arms the worker only once a list had more unreported blocks than a
# pass's budget of batches, a batch being PAGE_REPORTING_CAPACITY blocks (budget >= 1)
ONE_BATCH = ReportingParams().capacity


def asked(cap: Capture, stuck: frozenset | set = frozenset(), unheld_ask_none: bool = True) -> list[Block]:
    """Pending blocks (less `stuck`) that asked the worker for a pass, read while no pass is
    re-arming it (fewer pending than one batch): those the host holds a page of (with
    unheld_ask_none; else all of them: a migration destination got in-use pages whose
    content was zero as the zero page, not held, and their free asks). A free asks
    (__free_one_page -> page_reporting_notify_free) and frees pages the guest wrote, which the
    host holds; a block the host holds none of was made without a free: the remainder of a
    reported block split by an allocation (expand() adds it to the free list without a notify:
    after every THP touch, one order-9 block, e.g. pfn 284160 on 6.1 restored, still pending
    3.5 s later in 5 of 5 runs), or the reporter's put-back merging reported buddies."""
    left = [b for b in pending(cap) if (b.head, b.order) not in stuck]
    if len(left) >= ONE_BATCH or not unheld_ask_none:
        return left
    return [b for b in left if cap.held_in(b.head, b.end)]


def wait_reported(guest, order: int, ranges: list[RamRange] | None = None, timeout: float = 90.0) -> Capture:
    """Block until the guest shows nothing pending (e.g. the boot-time passes are done, every
    2 s per mm/page_reporting.c PAGE_REPORTING_DELAY); returns the last capture. TimeoutError
    names what is still pending."""
    ranges = ranges or pagemap.layout(guest)
    deadline = time.monotonic() + timeout
    stuck_since, last = 0.0, None
    while True:
        cap = capture(guest, order, ranges, recheck=False)
        left = pending(cap)
        if not left:
            return cap
        # A block made by the reporter's own put-back merging two reported buddies is
        # unreported, and nothing asks for a pass for it (__putback_isolated_page frees with
        # FPI_SKIP_REPORT_NOTIFY): the same few blocks pending through two delays and a pass
        # (seen: one DMA32 block for 90 s) are done as far as the worker goes. The next free at
        # the order gets them reported; the model takes them as unreported blocks.
        now = time.monotonic()
        heads = {(b.head, b.order) for b in left}
        if heads != last:
            stuck_since, last = now, heads
        elif len(heads) <= STUCK_MAX_BLOCKS and now - stuck_since > STUCK_S:
            return cap
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:.0f} s the guest still has {len(left)} unreported free blocks "
                               f"of order >= {order}, first at pfn {left[0].head:#x} ({left[0].zone})")
        time.sleep(0.5)  # poll interval of a condition with a deadline; each capture costs ~0.2 s of guest CPU


# --- the join (pure) -----------------------------------------------------------

def classify(b: Block, order: int) -> str:
    if b.reported:
        return "reported"
    return "free_unreported" if b.order >= order else "free_below_order"


def join(cap: Capture) -> dict[str, dict[str, int]]:
    """Per class: guest pages, and how many of them the host holds. RAM pages only."""
    out = {c: {"pages": 0, "held": 0} for c in CLASSES}
    for b in cap.blocks:
        c = out[classify(b, cap.order)]
        c["pages"] += b.pages
        c["held"] += cap.held_in(b.head, b.end)
    for kind, start, n in cap.scan.runs:
        if kind in "ARTP":                 # T: page tables; P: flagless, on a per-cpu list or the kernel's
            c = out["reserved" if kind == "R" else "allocated"]
            for r in cap.ranges:
                lo, hi = max(start, r.pfn), min(start + n, r.end)
                if lo < hi:
                    c["pages"] += hi - lo
                    c["held"] += cap.held_in(lo, hi)
    return out


def block_counts(cap: Capture) -> dict[str, dict[str, dict[str, int]]]:
    """{zone: {order: {"reported": n, "unreported": m}}} for orders >= the capture's order."""
    out: dict = {}
    for b in cap.blocks:
        if b.order >= cap.order:
            o = out.setdefault(b.zone, {}).setdefault(str(b.order), {"reported": 0, "unreported": 0})
            o["reported" if b.reported else "unreported"] += 1
    return out


# --- invariants (pure) ---------------------------------------------------------

@dataclass(frozen=True)
class Violation:
    rule: str  # reported_held | reported_while_off | not_released
    block: Block
    held: int  # pages of the block the host holds
    detail: str

    def __str__(self) -> str:
        b = self.block
        return (f"{self.rule}: block pfn {b.head:#x} order {b.order} in {b.zone} "
                f"({'reported' if b.reported else 'unreported'}): host holds {self.held}/{b.pages} pages; {self.detail}")


def _reported_held(cap: Capture) -> list[tuple[Block, int]]:
    return [(b, h) for b in cap.blocks if b.reported and (h := cap.held_in(b.head, b.end))]


def _confirmed(cap: Capture, b: Block) -> bool:
    """True unless the recheck shows the block no longer reported as is, or no longer held."""
    r = cap.recheck
    if r is None:
        return True
    return b in r.block_set and r.held_in(b.head, b.end) > 0


def reported_held(cap: Capture) -> tuple[list[Violation], int]:
    """(a) No reported block has a page the host holds. Returns (violations, raced): raced
    counts blocks held in the first capture that the recheck showed allocated or merged."""
    out, raced = [], 0
    for b, h in _reported_held(cap):
        if _confirmed(cap, b):
            out.append(Violation("reported_held", b, h, "the guest reported it and the host still holds it"
                                 + (" (still so in the recheck)" if cap.recheck else "")))
        else:
            raced += 1
    return out, raced


def reported_while_off(cap: Capture) -> list[Violation]:
    """(b) With reporting off, no block is marked reported."""
    return [Violation("reported_while_off", b, cap.held_in(b.head, b.end),
                      "PG_reported (KPF_UPTODATE on a buddy head) with no reporting device")
            for b in cap.blocks if b.reported]


def transition(after_free: Capture, settled: Capture) -> tuple[dict, list[Violation]]:
    """(c) Pages held right after the free that lie in blocks reported later are released.

    Returns ({"held_after_free": pages held in `after_free` inside blocks reported in
    `settled`, "released": of those, absent in `settled`, "still_held": the rest}, violations).
    """
    counts = {"held_after_free": 0, "released": 0, "still_held": 0}
    out = []
    for b in settled.blocks:
        if not b.reported:
            continue
        was = after_free.held[b.head:b.end]
        now = settled.held[b.head:b.end]
        before = was.count(1)
        # bytes are 0/1: AND them as big integers and count the bits
        still = (int.from_bytes(was, "big") & int.from_bytes(now, "big")).bit_count() if before else 0
        counts["held_after_free"] += before
        counts["still_held"] += still
        counts["released"] += before - still
        if still and _confirmed(settled, b):
            out.append(Violation("not_released", b, still,
                                 f"{before} of its pages were held after the free; {still} still are"))
    return counts, out


def violations(after_free: Capture, settled: Capture, reporting: bool) -> list[Violation]:
    """All invariant violations of a run: (a) and (c) with reporting on, (b) with it off."""
    if not reporting:
        return reported_while_off(after_free) + reported_while_off(settled)
    return (reported_held(after_free)[0] + reported_held(settled)[0]
            + transition(after_free, settled)[1])


class InvariantViolation(AssertionError):
    pass


def check(after_free: Capture, settled: Capture, reporting: bool) -> None:
    """Raise InvariantViolation, listing the blocks, if any invariant is violated."""
    v = violations(after_free, settled, reporting)
    if v:
        rules = ", ".join(f"{r} x{sum(1 for x in v if x.rule == r)}" for r in dict.fromkeys(x.rule for x in v))
        more = f"\n... and {len(v) - VIOLATIONS_SHOWN} more" if len(v) > VIOLATIONS_SHOWN else ""
        raise InvariantViolation(f"{len(v)} per-block invariant violations ({rules}):\n"
                                 + "\n".join(str(x) for x in v[:VIOLATIONS_SHOWN]) + more)


# --- the result section ----------------------------------------------------------

def describe(cap: Capture) -> dict:
    """One capture as data: timing, blocks per zone and order, pages held per class."""
    return {
        "timing": cap.timing,
        "zones": {z.name: {"pfns": [z.start, z.end], "gated": z.gated(cap.order)} for z in cap.scan.zones},
        "blocks": block_counts(cap),
        "pending_blocks": len(pending(cap)),
        "pages": join(cap),
        "buddyinfo_mismatches": buddyinfo_mismatches(cap.blocks, cap.scan, cap.order),
        "rechecked": cap.recheck is not None,
    }


def summary(after_free: Capture, settled: Capture, reporting: bool) -> dict:
    """The `per_block` section of a scenario result (JSON-serializable)."""
    v = violations(after_free, settled, reporting)
    by_rule: dict[str, int] = {}
    for x in v:
        by_rule[x.rule] = by_rule.get(x.rule, 0) + 1
    return {
        "order": after_free.order,
        "reporting": reporting,
        "after_free": describe(after_free),
        "settled": describe(settled),
        "transition": transition(after_free, settled)[0],
        "raced": reported_held(after_free)[1] + reported_held(settled)[1],
        "violations": {"count": len(v), "by_rule": by_rule, "first": [str(x) for x in v[:VIOLATIONS_SHOWN]]},
    }


def dumps(cap: Capture) -> str:
    return json.dumps(cap.to_json(), separators=(",", ":"))
