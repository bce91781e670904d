"""Run an allocation trace (touch / free / fragment over time) through a model guest.

Guest allocations, frees and reporting passes are interleaved in time order;
every report is applied on the host at once (QEMU handles it while the guest
waits for the ack), so the result is a timeline of reports and host drops.
"""
from __future__ import annotations

import gc
from array import array
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, islice, repeat
from operator import attrgetter, lt

from harness.model.buddy import MOVABLE, Machine
from harness.model.discard import MIB, PAGE, Discard, HostConfig, ResidentMap, discard
from harness.model.errors import ModelError
from harness.model.reporting import Pass, Reporter, ReportingParams, run_pass

PAGES_PER_MIB = MIB // PAGE

# Trace ops have slots: a long trace is a million of them, read once each, and a slotted op
# keeps its fields in the object (one cache line) where a plain instance keeps them in a
# separate values array (one more cache miss per op).


@dataclass(frozen=True, slots=True)
class Touch:
    """A workload allocates and writes `pages` pages (order-0, or THPs of pageblock_order)."""
    t: float
    tag: str
    pages: int
    mt: int = MOVABLE
    thp: bool = False
    node: int = 0


@dataclass(frozen=True, slots=True)
class Free:
    """Everything held under `tag` is freed (munmap, process exit)."""
    t: float
    tag: str


@dataclass(frozen=True, slots=True)
class Fragment:
    """Free all pages under `tag` but every keep_every-th: holes that block merging."""
    t: float
    tag: str
    keep_every: int = 2


@dataclass(frozen=True, slots=True)
class Register:
    """The reporting driver registers: page_reporting_register requests a first pass."""
    t: float


def touch(t: float, tag: str, mib: float, **kw) -> Touch:
    return Touch(t, tag, int(mib * PAGES_PER_MIB), **kw)


@dataclass
class SimResult:
    passes: list[Pass] = field(default_factory=list)
    drops: list[tuple[float, Discard]] = field(default_factory=list)   # per report, time order
    # tag -> the (pfn, n) runs it holds, flat in one array('Q'): pfn, n, pfn, n, ... A long
    # trace holds a million runs; as tuples they cost ~90 bytes each, scattered (a cache miss
    # per run when freed) and were objects for the cyclic GC to examine; here 16 bytes, in a
    # row. (Unsigned: array converts those without PyArg_Parse, a third faster than 'q'.)
    held_flat: dict[str, array] = field(default_factory=dict, repr=False)

    @property
    def held(self) -> dict[str, list[tuple[int, int]]]:
        """tag -> (pfn, n) runs the workload still holds (a copy)."""
        return {tag: _pairs(flat) for tag, flat in self.held_flat.items()}

    def curve(self, metric: str = "rss", since: float = 0.0) -> list[tuple[float, float]]:
        """(t - since, cumulative MiB) of host drop for reports at or after `since`."""
        out, cum = [(0.0, 0.0)], 0.0
        for t, d in self.drops:
            if t < since:
                continue
            cum += (d.rss_pages if metric == "rss" else d.mapping_pages) / PAGES_PER_MIB
            out.append((t - since, cum))
        return out

    def reported_mib(self, since: float = 0.0) -> float:
        return sum(r.pages for p in self.passes for r in p.reports if r.t >= since) / PAGES_PER_MIB


_T = attrgetter("t")


def _pairs(flat: array) -> list[tuple[int, int]]:
    it = iter(flat)
    return list(zip(it, it))


@contextmanager
def _cyclic_gc_paused():
    """A long trace allocates millions of run tuples and lists and makes no reference cycles
    (reference counting frees everything), yet the collector's full collections rescan the
    whole heap, the caller's million-op trace included: 1.5 of the 1M-op benchmark's first
    9 CPU seconds, ~0.25 s of its last 4.7. Restores the previous state, also on error."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Simulation:
    """A model guest, its reporter and host, advanced by trace ops; state carries over between run() calls."""

    def __init__(self, machine: Machine, *, threshold: int, params: ReportingParams = ReportingParams(),
                 host: HostConfig | None = None, resident: ResidentMap | None = None,
                 reporter: Reporter | None = None):
        self.machine, self.threshold, self.params = machine, threshold, params
        self.host = host or HostConfig()
        self.resident = resident
        self.reporter = reporter or Reporter()
        self.result = SimResult()
        self._granule = self.host.granule
        # Touching is a no-op on resident pages, and the pages an allocation takes whole from a
        # pcp list are pages this simulation held (touched; never reported while held or on the
        # pcp): it skips them, ~3M runs of the benchmark. Unless, between run() calls, someone
        # else dropped residency or put pages on a pcp list: _pcp_pages_resident() checks.
        self._pcp_resident = False             # for the current run()
        self._held_resident = True             # False for good once someone else drops residency
        self._seen: tuple | None = None        # _state() when the last run() ended

    def passes_until(self, t_limit: float | None) -> None:
        rep, res = self.reporter, self.result
        while rep.next_run is not None and (t_limit is None or rep.next_run <= t_limit):
            p = run_pass(self.machine, rep, self.params, self.threshold, rep.next_run)
            res.passes.append(p)
            for r in p.reports:
                res.drops.append((r.t, discard(r.blocks, self.host, self.resident)))

    def run(self, trace, until: float | None = None) -> SimResult:
        """Apply `trace` (ops with times, any order) and the passes they trigger, up to `until`
        (None: until reporting goes idle after the last op)."""
        rep = self.reporter
        handlers = {Touch: self._touch, Free: self._free, Fragment: self._fragment, Register: self._register}
        trace = list(trace)
        # out of order anywhere (a later op earlier)? In C: no generator step per op, no trace[1:]
        if any(map(lt, map(_T, islice(trace, 1, None)), map(_T, trace))):
            trace.sort(key=_T)
        self._pcp_resident = self._pcp_pages_resident()
        with _cyclic_gc_paused():
            for op in trace:
                if rep.next_run is not None and rep.next_run <= op.t:
                    self.passes_until(op.t)
                h = handlers.get(type(op))
                if h is None:
                    raise ModelError(f"unknown trace op {op!r}")
                h(op)
            self.passes_until(until)
        self._seen = self._state()
        return self.result

    def _state(self) -> tuple:
        # what _pcp_pages_resident compares between runs: same machine and map, nobody else's
        # clear() (ours come from discards, of free blocks only), nobody else's pcp frees
        res = self.resident
        return (self.machine, res, res.clears if res is not None else 0,
                sum(z.pcp_pushes for z in self.machine.zones))

    def _pcp_pages_resident(self) -> bool:
        """Are the pages on the pcp lists, and the pages held, known resident? (See __init__.)"""
        res = self.resident
        if res is None or len(res) < self.machine.end_pfn:
            return False
        seen, now = self._seen, self._state()
        if seen is None or seen[:2] != now[:2]:
            if self.result.held_flat:          # held pages from before this map was ours
                self._held_resident = False
        elif seen[2] != now[2]:
            self._held_resident = False        # someone's clear() may have hit held pages
        if not self._held_resident:
            return False
        if seen is not None and seen[:2] == now[:2] and seen[3] == now[3]:
            return True                        # nobody put pages on a pcp list since
        return all(res.count(p, n) == n for z in self.machine.zones for p, n in z.pcp)

    def _touch(self, op: Touch) -> None:
        machine = self.machine
        if op.thp:
            per = 1 << machine.spec.pageblock_order
            runs = machine.alloc_thp(-(-op.pages // per), node=op.node)
        else:
            runs = machine.alloc_pages(op.pages, op.mt, op.node)
        flat = self.result.held_flat.setdefault(op.tag, array("Q"))
        flat.extend(chain.from_iterable(runs))
        if self.resident is not None:
            k = machine.pcp_runs if self._pcp_resident and not op.thp else 0
            if k < len(runs):
                self.resident.touch_runs(runs[k:] if k else runs, self._granule)

    def _free(self, op: Free) -> None:
        flat = self.result.held_flat.pop(op.tag, None)
        if flat is None:
            raise ModelError(f"free of unknown tag {op.tag!r}")
        it = iter(flat)
        best = self.machine.free_runs(list(zip(it, it)))       # _freed, inlined (hot)
        if best >= self.threshold:
            self.reporter.notify_free(best, self.threshold, op.t, self.params.delay_s)

    def _fragment(self, op: Fragment) -> None:
        held = self.result.held_flat
        flat = held.get(op.tag)
        if flat is None:
            raise ModelError(f"fragment of unknown tag {op.tag!r}")
        k = op.keep_every
        if k < 1:
            raise ModelError("keep_every must be >= 1")
        if k == 1:
            return
        keep, drop = [], []
        for pfn, n in _pairs(flat):
            if n == 1:
                keep.append((pfn, 1))
                continue
            keep += zip(range(pfn, pfn + n, k), repeat(1))             # every k-th page stays,
            drop += zip(range(pfn + 1, pfn + n, k), repeat(k - 1))     # the k - 1 after it go
            last, m = drop[-1]
            if last + m > pfn + n:
                drop[-1] = (last, pfn + n - last)                       # (the last hole ends with the run)
        held[op.tag] = array("Q", chain.from_iterable(keep))
        self._freed(drop, op.t)

    def _register(self, op: Register) -> None:
        self.reporter.request(op.t, self.params.delay_s)

    def _freed(self, runs, t: float) -> None:
        # __free_one_page -> page_reporting_notify_free with the merged order
        best = self.machine.free_runs(runs)
        if best >= self.threshold:                # (the common case, below it, needs no call)
            self.reporter.notify_free(best, self.threshold, t, self.params.delay_s)


def simulate(machine: Machine, trace, *, threshold: int, params: ReportingParams = ReportingParams(),
             host: HostConfig | None = None, resident: ResidentMap | None = None,
             reporter: Reporter | None = None, until: float | None = None) -> SimResult:
    """One-shot Simulation(...).run(trace, until)."""
    return Simulation(machine, threshold=threshold, params=params, host=host, resident=resident,
                      reporter=reporter).run(trace, until)
