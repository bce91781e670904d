"""Free page reporting, after mm/page_reporting.c (identical in 6.1 and 6.12 but for the order).

How much one pass reports, and why the 2 GiB guest gives back ~256 MiB per pass
-------------------------------------------------------------------------------
A pass (page_reporting_process) walks every zone; in a zone that passes the
gate (free > low + capacity << order) it walks order = threshold..10 and, per
order, each migratetype's list but ISOLATE (page_reporting_cycle). Per list:

* budget = DIV_ROUND_UP(free_area[order].nr_free, capacity * 16). nr_free is
  the count of *every* free block of that order in the zone, all migratetypes,
  reported ones included.
* Unreported blocks are isolated into a 32-entry scatterlist. A full list is
  sent (prdev->report, budget--) only when one more unreported block is found;
  the walk then restarts at the head (where that block was rotated to). Once
  budget < 0 an unreported block makes the list stop and set REQUESTED.
  So a list gives at most (budget + 1) * 32 blocks per pass; what is left in
  the scatterlist carries over to the next list and is flushed at the zone end.
* Reported blocks go back to the *tail* (FPI_TO_TAIL) and are skipped later,
  so each pass starts with the unreported blocks at the head.

2 GiB guest, order 9, after freeing 1 GiB: ~1.9 GiB free sits in order-10
(4 MiB) blocks of DMA32, about 475 of them (475 * 4 MiB = 1.9 GiB; the
"~950 blocks" of the issue counts 2 MiB units). budget = ceil(475 / 512) = 1,
so the Movable order-10 list sends 2 full reports = 64 blocks = 256 MiB,
then stops at the 65th unreported block and asks for another pass 2 s later.
The ~256 freed 4 MiB blocks need 4 passes: steps of 256 MiB at ~2, 4, 6, 8 s.
(Order-9 blocks go first and share the first scatterlist, which is why a
first step can be a little short of 256 MiB.) A zone with more than 512 free
4 MiB blocks (> 2 GiB free in one zone) gets budget 2 -> 384 MiB per list per
pass; each zone and each migratetype list has its own budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.model.buddy import ISOLATE, MIGRATE_TYPES, Machine, Zone

IDLE, REQUESTED, ACTIVE = "idle", "requested", "active"


def zone_gate_mark(low: int, order: int, capacity: int = 32) -> int:
    """page_reporting_process_zone: a zone is walked only while its free pages pass
    zone_watermark_ok(low + (capacity << order)); the one statement of that rule (the
    per-block captures' Zone.gated reads it too)."""
    return low + (capacity << order)


@dataclass(frozen=True)
class ReportingParams:
    """The kernel's constants, as parameters so a what-if can move them.

    order: None means the guest's effective order (the caller's `order`).
    report_latency_s is not a kernel constant: one prdev->report round trip
    (guest virtqueue add + kick, QEMU discard, ack). It only stretches the
    time between passes; measure it under TCG.
    """
    capacity: int = 32            # include/linux/page_reporting.h PAGE_REPORTING_CAPACITY
    delay_s: float = 2.0          # mm/page_reporting.c PAGE_REPORTING_DELAY (2 * HZ)
    budget_divisor: int = 16      # page_reporting_cycle: DIV_ROUND_UP(nr_free, CAPACITY * 16)
    zone_gate: bool = True        # page_reporting_process_zone: low wmark + (CAPACITY << order)
    isolation_gate: bool = True   # __isolate_free_page: WMARK_MIN + (1 << order)
    order: int | None = None
    report_latency_s: float = 0.005
    budget_offset: int = 0        # a what-if: the budget off by this many reports (kernel: 0)

    def __post_init__(self):
        if self.capacity < 1 or self.budget_divisor < 1 or self.delay_s < 0 or self.report_latency_s < 0:
            raise ValueError(f"bad reporting params {self}")


@dataclass
class Reporter:
    """The prdev->state machine (mm/page_reporting.c) and the pending delayed work."""
    state: str = IDLE
    next_run: float | None = None

    def request(self, now: float, delay_s: float) -> None:
        # __page_reporting_request: only an IDLE -> REQUESTED change schedules work
        if self.state == REQUESTED:
            return
        old, self.state = self.state, REQUESTED
        if old == IDLE:
            self.next_run = now + delay_s

    def notify_free(self, order: int, threshold: int, now: float, delay_s: float) -> None:
        # mm/page_reporting.h page_reporting_notify_free: merged order below the threshold is ignored
        if order >= threshold:
            self.request(now, delay_s)


@dataclass(frozen=True)
class Report:
    """One prdev->report call: up to `capacity` blocks of one zone."""
    t: float
    zone: str
    blocks: tuple[tuple[int, int], ...]   # (pfn, order)

    @property
    def pages(self) -> int:
        return sum(1 << o for _, o in self.blocks)


@dataclass(frozen=True)
class Cycle:
    """What one page_reporting_cycle did to one list (the 'why' of a pass)."""
    zone: str
    order: int
    mt: int
    nr_free: int
    budget: int
    isolated: int
    full_reports: int
    stop: str          # "empty", "exhausted", "budget", "watermark"


@dataclass
class Pass:
    t_start: float
    t_end: float = 0.0
    reports: list[Report] = field(default_factory=list)
    cycles: list[Cycle] = field(default_factory=list)
    gated: list[str] = field(default_factory=list)    # zones skipped by the zone gate
    again: bool = False                               # ended REQUESTED -> another pass

    @property
    def pages(self) -> int:
        return sum(r.pages for r in self.reports)


class _Pass:
    def __init__(self, params: ParamsLike, threshold: int, t: float, rec: Pass):
        self.p, self.thr, self.t, self.rec = params, threshold, t, rec
        self.requested = False

    def report(self, zone: Zone, sg: list[tuple[int, int]]) -> None:
        # prdev->report, then page_reporting_drain: back to the tail, reported
        # unless merged. Drain walks sgl[] upwards, i.e. last isolated first.
        self.rec.reports.append(Report(self.t, zone.key, tuple(sg)))
        self.t += self.p.report_latency_s
        for pfn, order in reversed(sg):
            zone.putback(pfn, order, True)
        sg.clear()

    def zone(self, zone: Zone) -> None:
        # page_reporting_process_zone
        p, thr = self.p, self.thr
        if p.zone_gate and not zone.watermark_ok(zone_gate_mark(zone.wmark_low, thr, p.capacity)):
            self.rec.gated.append(zone.key)
            return
        sg: list[tuple[int, int]] = []
        for order in range(thr, zone.nr_orders):
            for mt in range(MIGRATE_TYPES):
                if mt == ISOLATE:            # "We do not pull pages from the isolate free list"
                    continue
                self.cycle(zone, order, mt, sg)
        if sg:                               # "report the leftover pages before going idle"
            self.report(zone, sg)

    def cycle(self, zone: Zone, order: int, mt: int, sg: list) -> None:
        # page_reporting_cycle. The kernel walks the list once, isolating as it goes; an
        # OrderedDict cannot be changed while iterated, so each round first reads the next
        # unreported blocks it can use (capacity left + the one that would trigger a report),
        # then applies the kernel's checks to them in the same order.
        p = self.p
        lst = zone.lists[order][mt]
        if not lst:
            return
        cap = p.capacity
        nr_free = zone.nr_free[order]
        budget = -(-nr_free // (cap * p.budget_divisor)) + p.budget_offset
        budget0, isolated, full, stop = budget, 0, 0, "exhausted"
        isolate = zone.isolate if p.isolation_gate else (lambda pfn, o: _isolate_ungated(zone, pfn, o))
        nxt = None
        unrep = zone.unrep[order]
        while True:
            need = min(cap - len(sg) + 1, unrep[mt])
            cand = []
            if need:
                for pfn, rep in lst.items():    # skip reported pages
                    if not rep:
                        cand.append(pfn)
                        if len(cand) == need:
                            break
            restart = False
            for pfn in cand:
                if budget < 0:                   # budget spent: ask for another pass
                    self.requested = True
                    nxt, stop = pfn, "budget"
                    break
                if len(sg) < cap:
                    if not isolate(pfn, order):
                        nxt, stop = pfn, "watermark"
                        break
                    sg.append((pfn, order))
                    isolated += 1
                    continue
                _rotate_to_front(lst, pfn)       # first unprocessed page becomes the head
                self.report(zone, sg)
                full += 1
                budget -= 1
                restart = True                   # "Reset next to first entry"
                break
            if not restart:
                break
        if nxt is not None:
            _rotate_to_front(lst, nxt)           # "Rotate any leftover pages to the head"
        self.rec.cycles.append(Cycle(zone.key, order, mt, nr_free, budget0, isolated, full, stop))


ParamsLike = ReportingParams


def _isolate_ungated(zone: Zone, pfn: int, order: int) -> bool:
    saved = zone.wmark_min, zone.boost
    zone.wmark_min, zone.boost = -(1 << 62), 0
    try:
        return zone.isolate(pfn, order)
    finally:
        zone.wmark_min, zone.boost = saved


def _rotate_to_front(lst, pfn) -> None:
    # include/linux/list.h list_rotate_to_front: the entries before pfn move to the tail, in order
    if next(iter(lst)) == pfn:
        return
    before = []
    for k in lst:
        if k == pfn:
            break
        before.append(k)
    for k in before:
        lst.move_to_end(k)


def run_pass(machine: Machine, reporter: Reporter, params: ReportingParams, threshold: int, t: float) -> Pass:
    """page_reporting_process: one pass over all zones at time t."""
    reporter.state, reporter.next_run = ACTIVE, None
    rec = Pass(t_start=t)
    run = _Pass(params, threshold, t, rec)
    if threshold < machine.spec.nr_orders:
        for zone in machine.zones:           # for_each_zone
            run.zone(zone)
    rec.t_end = run.t
    if run.requested:
        reporter.state = REQUESTED
    # atomic_cmpxchg(ACTIVE -> IDLE); REQUESTED reschedules after the delay
    if reporter.state == REQUESTED:
        reporter.next_run = rec.t_end + params.delay_s
        rec.again = True
    else:
        reporter.state = IDLE
    return rec


def run_until_idle(machine: Machine, reporter: Reporter, params: ReportingParams, threshold: int,
                   until: float | None = None, max_passes: int = 100000) -> list[Pass]:
    """Run the scheduled passes in time order until the reporter goes idle (or `until`)."""
    out = []
    while reporter.next_run is not None and len(out) < max_passes:
        if until is not None and reporter.next_run > until:
            break
        out.append(run_pass(machine, reporter, params, threshold, reporter.next_run))
    return out
