"""From two snapshots around a free to a predicted host RSS drop: a value, an interval, a curve.

The guest side is exact given the model's inputs: the `after` snapshot's free
lists are laid out, blocks that were already free `before` are taken as
reported (a settled guest reported them long ago), the rest as new, and the
reporting passes are run. What the model cannot know enters the interval as
named terms, each with its MiB contribution to lo and hi.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..snapshot import MIGRATETYPE_NAMES, Snapshot
from .buddy import Machine
from .discard import MIB, PAGE, HostConfig, ResidentMap, discard
from .errors import ModelError
from .kernel import kernel_spec
from .layout import PlacedBlock, build_machine, build_machine_from_blocks
from .reporting import IDLE, Pass, Reporter, ReportingParams, run_until_idle

PAGES_PER_MIB = MIB // PAGE


def _mib(pages: float) -> float:
    return pages / PAGES_PER_MIB


@dataclass(frozen=True)
class ResidentFraction:
    """Host residency when only /proc snapshots are known (they carry no positions).

    new: fraction of each newly freed block that is backed on the host; None
    means "the freed memory was resident": min(1, freed / new block memory).
    settled: fraction of the free memory that was already free before (reported
    at boot or never touched: 0 on a fresh guest).
    """
    new: float | None = None
    settled: float = 0.0

    def __post_init__(self):
        for v in (self.new, self.settled):
            if v is not None and not 0.0 <= v <= 1.0:
                raise ModelError(f"resident fraction {v} outside 0..1")


@dataclass(frozen=True)
class ReporterState:
    """Where the reporting worker was when the free began (t = 0).

    idle: the free schedules a pass delay_s later. requested/active: work is
    already pending at next_run_s (e.g. boot-time reporting not finished).
    """
    state: str = IDLE
    next_run_s: float | None = None

    def __post_init__(self):
        if self.state not in ("idle", "requested", "active"):
            raise ModelError(f"reporter state {self.state!r}")
        if self.state != "idle" and self.next_run_s is None:
            raise ModelError("a pending reporter needs next_run_s")


@dataclass(frozen=True)
class Term:
    """One thing the model cannot know, with what it can do to the measured drop."""
    name: str
    explanation: str
    lo_mib: float     # <= 0: how much lower the drop could be
    hi_mib: float     # >= 0: how much higher

    def to_json(self) -> dict:
        return {"name": self.name, "explanation": self.explanation,
                "lo_mib": round(self.lo_mib, 2), "hi_mib": round(self.hi_mib, 2)}


@dataclass(frozen=True)
class Prediction:
    expected_mib: float
    lo_mib: float
    hi_mib: float
    metric: str                                   # "rss" (QEMU process) or "mapping" (guest RAM)
    terms: tuple[Term, ...]
    curve: tuple[tuple[float, float], ...]        # (seconds after the free, cumulative MiB)
    reported_curve: tuple[tuple[float, float], ...]   # guest side: MiB reported so far
    total_mib: float                              # drop once every pass has run
    rss_mib: float                                # process RSS drop by the end
    mapping_mib: float                            # guest RAM mapping drop by the end
    per_zone: dict = field(default_factory=dict)
    per_order: dict = field(default_factory=dict)
    passes: tuple[dict, ...] = ()
    why: tuple[str, ...] = ()
    inputs: dict = field(default_factory=dict)

    def at(self, t: float) -> float:
        """Cumulative predicted drop t seconds after the free."""
        v = 0.0
        for ti, c in self.curve:
            if ti > t:
                break
            v = c
        return v

    def seconds_to_fraction(self, frac: float) -> float | None:
        """When the predicted drop first reaches frac of its total (None if it never drops)."""
        if self.total_mib <= 0:
            return None
        for t, c in self.curve:
            if c >= frac * self.total_mib - 1e-9:
                return t
        return None

    def to_json(self) -> dict:
        return {
            "expected_mib": round(self.expected_mib, 2), "lo_mib": round(self.lo_mib, 2),
            "hi_mib": round(self.hi_mib, 2), "metric": self.metric,
            "total_mib": round(self.total_mib, 2), "rss_mib": round(self.rss_mib, 2),
            "mapping_mib": round(self.mapping_mib, 2),
            "seconds_to_90pct": self.seconds_to_fraction(0.9),
            "terms": [t.to_json() for t in self.terms],
            "curve": [[round(t, 3), round(c, 2)] for t, c in self.curve],
            "reported_curve": [[round(t, 3), round(c, 2)] for t, c in self.reported_curve],
            "per_zone": self.per_zone, "per_order": {str(k): v for k, v in self.per_order.items()},
            "passes": list(self.passes), "why": list(self.why), "inputs": self.inputs,
        }


def verdict(measured_mib: float, prediction: Prediction) -> str:
    return "within" if prediction.lo_mib <= measured_mib <= prediction.hi_mib else "outside"


def _check_same_zones(before: Snapshot, after: Snapshot) -> None:
    kb = {z.key for z in before.populated_zones()}
    ka = {z.key for z in after.populated_zones()}
    if kb != ka:
        raise ModelError(f"before/after snapshots have different zones: {sorted(kb)} vs {sorted(ka)}")
    if before.pagetypes.nr_orders != after.pagetypes.nr_orders:
        raise ModelError("before/after snapshots disagree on the number of orders")


def _reported_counts(before: Snapshot, after: Snapshot, thr: int, nr_orders: int) -> dict:
    """Blocks free in both snapshots count as already reported (the guest had settled)."""
    out = {}
    for z in after.populated_zones():
        a = after.free_counts(*z.key)
        b = before.free_counts(*z.key)
        out[z.key] = {mt: [min(a[mt][o], b.get(mt, (0,) * nr_orders)[o]) if o >= thr else 0
                           for o in range(nr_orders)] for mt in a}
    return out


def _residency(machine: Machine, placed: list[PlacedBlock], thr: int, new_frac: float,
               settled_frac: float) -> ResidentMap:
    res = ResidentMap(machine.end_pfn)
    for b in placed:
        if b.order < thr:
            continue
        f = settled_frac if b.settled else new_frac
        n = round(f * (1 << b.order))
        if n:
            res.set(b.pfn, n)
    return res


def _ceil_blocks(mib: float, block_mib: float) -> float:
    return math.ceil(max(mib, 0.0) / block_mib - 1e-9) * block_mib if mib > 0 else 0.0


def predict_touch_free(before: Snapshot, after: Snapshot, *, kernel: str, order: int, freed_mib: float,
                       resident: ResidentFraction | ResidentMap | None = None, blocks=None,
                       backend: str = "anon",
                       host_page_size: int = PAGE, params: ReportingParams = ReportingParams(),
                       noise_mib: float, discard_inhibited: bool = False, poison_val: int = 0,
                       window_s: float | None = None, timing_jitter_s: float = 0.5,
                       reporter: ReporterState = ReporterState(), before_reported: bool = True,
                       activity_mib: float = 4.0, metric: str = "rss") -> Prediction:
    """Predict how much of `freed_mib` the host gets back, and when. See harness.model docs."""
    if metric not in ("rss", "mapping"):
        raise ModelError(f"metric {metric!r}: 'rss' or 'mapping'")
    if freed_mib < 0 or noise_mib < 0 or activity_mib < 0 or timing_jitter_s < 0:
        raise ModelError("freed_mib, noise_mib, activity_mib and timing_jitter_s must be >= 0")
    _check_same_zones(before, after)
    spec = kernel_spec(kernel, after.pagetypes.pageblock_order, after.pagetypes.nr_orders)
    thr = params.order if params.order is not None else order
    if not 0 <= thr <= spec.max_order:
        raise ModelError(f"reporting order {thr} outside 0..{spec.max_order}")
    host = HostConfig(backend=backend, page_size=host_page_size,
                      discard_inhibited=discard_inhibited, poison_val=poison_val)
    block_mib = _mib(1 << thr)
    resident = resident if resident is not None else ResidentFraction()
    if isinstance(resident, ResidentMap) and blocks is None:
        raise ModelError("a per-pfn ResidentMap needs the guest's real free blocks (blocks=...): "
                         "/proc snapshots carry no positions; use ResidentFraction instead")

    if blocks is not None:
        machine, placed = build_machine_from_blocks(after, spec, blocks)
    else:
        settled = _reported_counts(before, after, thr, spec.nr_orders)
        machine, placed = build_machine(after, spec, settled, mark_reported=before_reported)
    new_blocks = [b for b in placed if b.order >= thr and not b.settled]
    new_pages = sum(1 << b.order for b in new_blocks)
    freed_pages = freed_mib * PAGES_PER_MIB
    if isinstance(resident, ResidentMap):
        res = ResidentMap.from_bytes(resident.bits, machine.end_pfn)
        new_resident_pages = sum(res.count(b.pfn, 1 << b.order) for b in new_blocks)
        new_frac = new_resident_pages / new_pages if new_pages else 0.0
        settled_frac = None
    else:
        new_frac = resident.new if resident.new is not None else (
            min(1.0, freed_pages / new_pages) if new_pages else 0.0)
        res = _residency(machine, placed, thr, new_frac, resident.settled)
        new_resident_pages = sum(round(new_frac * (1 << b.order)) for b in new_blocks)
        settled_frac = resident.settled

    rep = Reporter(state=reporter.state, next_run=reporter.next_run_s)
    # the free merged blocks of the threshold order or more: page_reporting_notify_free
    if any(not b.reported and b.order >= thr for b in placed):
        rep.request(0.0, params.delay_s)
    passes = run_until_idle(machine, rep, params, thr)

    # host side, report by report
    curve, rcurve = [(0.0, 0.0)], [(0.0, 0.0)]
    cum = cum_rep = rss_tot = map_tot = 0.0
    events = []
    per_zone: dict = {}
    per_order: dict = {}
    for p in passes:
        for r in p.reports:
            d = discard(r.blocks, host, res)
            got = d.rss_pages if metric == "rss" else d.mapping_pages
            cum += _mib(got)
            cum_rep += _mib(r.pages)
            rss_tot += _mib(d.rss_pages)
            map_tot += _mib(d.mapping_pages)
            curve.append((r.t, cum))
            rcurve.append((r.t, cum_rep))
            events.append((r.t, _mib(got)))
            pz = per_zone.setdefault(r.zone, {"reported_mib": 0.0, "dropped_mib": 0.0, "reports": 0})
            pz["reported_mib"] += _mib(r.pages)
            pz["dropped_mib"] += _mib(got)
            pz["reports"] += 1
            # split the host result over the blocks' orders by pages (exact when one order)
            for _, o in r.blocks:
                po = per_order.setdefault(o, {"reported_blocks": 0, "reported_mib": 0.0})
                po["reported_blocks"] += 1
                po["reported_mib"] += _mib(1 << o)
    for b in new_blocks:
        per_order.setdefault(b.order, {"reported_blocks": 0, "reported_mib": 0.0})
        per_order[b.order]["new_blocks"] = per_order[b.order].get("new_blocks", 0) + 1
    for z in machine.zones:
        pz = per_zone.setdefault(z.key, {"reported_mib": 0.0, "dropped_mib": 0.0, "reports": 0})
        pz["new_block_mib"] = _mib(sum(1 << b.order for b in new_blocks if b.zone == z.key))
        pz["free_mib_after"] = _mib(z.free_pages)
        pz["gated_passes"] = sum(1 for p in passes if z.key in p.gated)
    total = cum
    expected = total if window_s is None else sum(m for t, m in events if t <= window_s)

    terms = []
    terms.append(Term("rss_noise", "measured RSS noise of an idle guest (input)", -noise_mib, noise_mib))
    # pages on per-cpu lists at `after`: outside the buddy lists, so their blocks did not form
    pcp_pages = sum(z.pcp_pages for z in after.populated_zones())
    # What drained pcp pages can bring into reportable blocks and the host can give back:
    # the pcp pages themselves (recently freed, so resident), freed memory not yet in a
    # reportable block, and, where the real blocks are known, resident pages of free blocks
    # below the order (seen on 6.12 x QEMU 10.0: 1026 MiB back for 1024 freed, 36 over the
    # prediction, with 39 MiB on pcp lists; the bound by freed memory alone was too low).
    unformed = max(0.0, freed_pages - new_resident_pages)
    small_resident = 0
    if isinstance(resident, ResidentMap):
        small_resident = sum(res.count(b.pfn, 1 << b.order) for b in placed if b.order < thr)
    joinable = pcp_pages + max(unformed, small_resident)
    pcp_hi = min(pcp_pages * (1 << thr), joinable) if host.discards and metric_moves(host, metric) else 0
    terms.append(Term("pcp_pages",
                      f"{pcp_pages} pages sat on per-cpu lists at `after`; drained, each can complete a "
                      f"{block_mib:g} MiB block (bounded by themselves plus resident free memory not yet "
                      f"in a reportable block)",
                      0.0, _mib(pcp_hi)))
    act = _ceil_blocks(activity_mib, block_mib) if host.discards and metric_moves(host, metric) else 0.0
    terms.append(Term("guest_allocations",
                      f"guest allocations during the window (~{activity_mib:g} MiB input) can split "
                      f"unreported {block_mib:g} MiB blocks before their pass",
                      -min(expected, act), 0.0))
    terms.append(Term("guest_frees",
                      f"guest frees during the window (~{activity_mib:g} MiB input) can add resident "
                      f"reportable blocks",
                      0.0, act))
    pending = sum(m for t, m in events if window_s is not None and t > window_s)
    if window_s is not None:
        lo_edge = -sum(m for t, m in events if window_s - timing_jitter_s < t <= window_s)
        hi_edge = sum(m for t, m in events if window_s < t <= window_s + timing_jitter_s)
        terms.append(Term("window_edge",
                          f"reports within {timing_jitter_s:g} s of the window end may land on either side "
                          f"(delay timer, pass duration)",
                          lo_edge, hi_edge))
        if pending > hi_edge:
            terms.append(Term("pending_after_window",
                              f"{pending - hi_edge:.0f} MiB is still inside the delay or waiting for budget "
                              f"passes after the window: left out of expected, not a measurement error",
                              0.0, 0.0))
    # No clamp at 0: the measured drop is a difference of two noisy RSS samples
    # and can be slightly negative when nothing comes back.
    lo = expected + sum(t.lo_mib for t in terms)
    hi = expected + sum(t.hi_mib for t in terms)

    why = _why(passes, thr, params)
    inputs = {"kernel": kernel, "order": thr, "freed_mib": freed_mib, "backend": backend,
              "host_page_size": host_page_size, "noise_mib": noise_mib, "window_s": window_s,
              "discard_inhibited": discard_inhibited, "poison_val": poison_val,
              "resident_new_fraction": round(new_frac, 4), "resident_settled_fraction": settled_frac,
              "layout": "blocks" if blocks is not None else "counts",
              "params": {"capacity": params.capacity, "delay_s": params.delay_s,
                         "budget_divisor": params.budget_divisor, "zone_gate": params.zone_gate,
                         "isolation_gate": params.isolation_gate, "report_latency_s": params.report_latency_s},
              "new_block_mib": _mib(new_pages), "pending_after_window_mib": pending}
    for v in per_zone.values():
        for k in list(v):
            if isinstance(v[k], float):
                v[k] = round(v[k], 2)
    return Prediction(
        expected_mib=expected, lo_mib=lo, hi_mib=hi, metric=metric, terms=tuple(terms),
        curve=tuple(curve), reported_curve=tuple(rcurve), total_mib=total, rss_mib=rss_tot,
        mapping_mib=map_tot, per_zone=per_zone, per_order=dict(sorted(per_order.items())),
        passes=tuple(_pass_json(p) for p in passes), why=tuple(why), inputs=inputs)


def metric_moves(host: HostConfig, metric: str) -> bool:
    """False when the metric cannot move at all (hugetlb pages are outside Rss)."""
    return not (host.hugetlb and metric == "rss")


def _pass_json(p: Pass) -> dict:
    return {"t_start": round(p.t_start, 3), "t_end": round(p.t_end, 3), "reports": len(p.reports),
            "reported_mib": round(_mib(p.pages), 2), "again": p.again, "gated": list(p.gated),
            "cycles": [{"zone": c.zone, "order": c.order, "type": MIGRATETYPE_NAMES[c.mt],
                        "nr_free": c.nr_free, "budget": c.budget, "isolated": c.isolated,
                        "full_reports": c.full_reports, "stop": c.stop} for c in p.cycles]}


def _why(passes: list[Pass], thr: int, params: ReportingParams) -> list[str]:
    out = []
    per = params.capacity * params.budget_divisor
    for i, p in enumerate(passes, 1):
        parts = []
        for c in p.cycles:
            if c.isolated == 0 and c.full_reports == 0:
                continue
            parts.append(f"{c.zone} order {c.order} {MIGRATETYPE_NAMES[c.mt]}: nr_free {c.nr_free} -> budget "
                         f"ceil({c.nr_free}/{per}) = {c.budget}, {c.full_reports} full report(s), "
                         f"{c.isolated} block(s) taken, stopped: {c.stop}")
        for g in p.gated:
            parts.append(f"{g}: below low watermark + {params.capacity} << {thr}, skipped")
        out.append(f"pass {i} at {p.t_start:.2f} s: {_mib(p.pages):.0f} MiB in {len(p.reports)} report(s)"
                   f"{'; budget spent, another pass in %g s' % params.delay_s if p.again else ''}. "
                   + "; ".join(parts))
    return out
