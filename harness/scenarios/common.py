"""What every scenario does: settle, then measure phases that release guest memory.

A phase: snapshot the guest (held) -> the action that releases memory ->
snapshot (freed) -> wait until QEMU's RSS settles -> the numbers. All waits are
conditions with deadlines; harness.prediction later runs the model on each
phase's snapshots.
"""
from __future__ import annotations

import json
import logging
import re
import time
from contextlib import contextmanager

from .. import guestfacts, hostmem, pagemap, perblock, procfs

log = logging.getLogger(__name__)

# Stability: RSS counts as settled when it moved less than STABLE_EPS_MIB over
# STABLE_WINDOW_S. The window must exceed the kernel's 2 s reporting delay
# (mm/page_reporting.c PAGE_REPORTING_DELAY) plus one pass, or the flat stretch
# between two passes would pass for the end.
STABLE_WINDOW_S = 5.0
STABLE_EPS_MIB = 4.0
SETTLE_TIMEOUT_S = 120.0
PAGEBLOCK_ORDER = 9  # x86_64 with HUGETLB_PAGE (include/linux/pageblock-flags.h)


class Run:
    """One guest under measurement: its facts, its sampler, its workload process."""

    def __init__(self, guest, sampler):
        self.g, self.s = guest, sampler
        self.phases: list[dict] = []
        self.facts = {
            "reporting_negotiated": guestfacts.reporting_negotiated(guest),
            "reporting_order": guestfacts.reporting_order(guest),
        }
        # With no reporting driver registered sysfs reads MAX_ORDER (6.1) or
        # -1 (6.12); the yardstick and the model then use the order
        # registration would pick (mm/page_reporting.c page_reporting_register).
        o = self.facts["reporting_order"]
        self.order = o if 0 <= o <= 10 else PAGEBLOCK_ORDER
        self.wl = None
        self.ranges = pagemap.layout(guest)  # guest-physical -> host mapping, for per-block captures

    def ask(self, line: str) -> str:
        """A command to the guest workload (guest_images/src/e2emem.c)."""
        if self.wl is None:
            self.wl = self.g.ssh.start("e2emem")
        return self.wl.ask(line)

    def settle(self, since: float, what: str) -> hostmem.Sample:
        return self.s.wait_for(hostmem.stable_for(STABLE_WINDOW_S, STABLE_EPS_MIB, since), SETTLE_TIMEOUT_S, what)

    def release(self, name: str, action, freed_mib: float, carries_unreported: bool = False,
                freed_pfns: list[tuple[int, int]] | None = None) -> dict:
        """Measure one phase: `action()` releases about `freed_mib` MiB in the guest.

        carries_unreported: nothing was allocated since the previous release, so
        what it left resident and unreported is released again here (see prediction.py).
        freed_pfns: the guest pages the release will free, as (first pfn, pages) runs, when
        they are known beforehand (a user's workload: its pages from /proc/PID/pagemap)."""
        held = guestfacts.snapshot_texts(self.g)
        t0 = time.monotonic()
        peak = self.s.wait_for(lambda xs: xs[-1].t >= t0, 10, "a sample before the release")
        log.info("%s: releasing %g MiB", name, freed_mib,
                 extra={"phase": name, "peak_mib": peak.rss_mib, "freed_mib": freed_mib})
        t_action = time.monotonic()
        action()
        freed = guestfacts.snapshot_texts(self.g)
        # The guest's free blocks and the host's residency, block by block, right
        # after the release (the model's exact input) and once RSS has settled.
        cap_freed = perblock.capture(self.g, self.order, self.ranges)
        first_capture_s = time.monotonic() - t_action
        log.info("%s: waiting for RSS to settle", name)
        after = self.settle(t0, f"RSS to settle after {name}")
        samples = self.s.since(t0)
        cap_settled = perblock.capture(self.g, self.order, self.ranges)
        reportable = (procfs.free_mib_at_or_above(procfs.parse_buddyinfo(freed["buddyinfo"]), self.order)
                      - procfs.free_mib_at_or_above(procfs.parse_buddyinfo(held["buddyinfo"]), self.order))
        drop = peak.rss_mib - after.rss_mib
        phase = {
            "phase": name,
            "freed_mib": freed_mib,
            "rss_peak_mib": round(peak.rss_mib, 1),
            "rss_after_mib": round(after.rss_mib, 1),
            "drop_mib": round(drop, 1),
            "ram_rss_peak_mib": round(peak.ram_rss_mib, 1),
            "ram_rss_after_mib": round(after.ram_rss_mib, 1),
            "ram_drop_mib": round(peak.ram_rss_mib - after.ram_rss_mib, 1),
            "reportable_mib": round(reportable, 1),
            "reportable_order": self.order,
            "seconds_to_90pct": time_to_fraction(samples, t0, peak.rss_mib, drop, 0.9),
            "samples": [[round(x.t - t0, 2), round(x.rss_mib, 1), round(x.ram_rss_mib, 1)] for x in samples],
            "snapshots": {"held": held, "freed": freed},
            "carries_unreported": carries_unreported,
            "per_block": perblock.summary(cap_freed, cap_settled, self.g.cfg.reporting),
            "first_capture_s": round(first_capture_s, 2),  # from the release; within the 2 s delay?
            "captures": {"freed": cap_freed.to_json(), "settled": cap_settled.to_json()},
        }
        if freed_pfns is not None:
            phase["freed_pfns"] = [list(r) for r in freed_pfns]
        self.phases.append(phase)
        self._keep(phase)
        log.info("%s: drop %.1f MiB", name, drop, extra={"phase_done": name})
        return phase

    def _keep(self, phase: dict) -> None:
        """Each phase's snapshots and captures go to the guest's run directory as soon as they
        are measured, so a run cut short later still has them."""
        d = self.g.rundir / "phases"
        d.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", phase["phase"])
        (d / f"{len(self.phases):02d}-{name}.json").write_text(json.dumps(phase) + "\n")

    def result(self, scenario: str, **extra) -> dict:
        """Facts, the phases, and the main (last) phase's numbers at the top level."""
        g = self.g
        self.g.check_healthy()
        heavy = ("phase", "snapshots", "captures")  # kept once, in the phase itself
        main = {k: v for k, v in self.phases[-1].items() if k not in heavy} if self.phases else {}
        return {
            "scenario": scenario, "accel": g.cfg.accel, "kernel": g.image.kernel_release, "qemu": g.qemu.version,
            "memory_mib": g.cfg.memory_mib, "smp": g.cfg.smp, "reporting": g.cfg.reporting,
            "backend": g.cfg.backend, "host_page_size": g.cfg.host_page_size, "numa_nodes": g.cfg.numa_nodes,
            "host_thp": g.cfg.host_thp, **self.facts, "boot_s": round(g.boot_s, 2),
            **extra, **main, "phases": self.phases,
        }


@contextmanager
def measuring(guest, progress=None):
    """A Run with its sampler going, once the idle guest's RSS has settled. Samples are
    kept in the guest's run directory (samples.csv) as they come. Progress goes to logging
    (`progress` is accepted and unused, for scenarios written before that)."""
    with hostmem.Sampler(guest.pid, guest.ram_hvas(), csv_path=guest.rundir / "samples.csv") as s:
        run = Run(guest, s)
        try:
            if run.facts["reporting_negotiated"]:
                # The boot-time passes report all free memory 256 MiB or so at a time
                # (~16 s for 2 GiB) without moving RSS (it was never touched). A release
                # during them finds the worker already scheduled, not idle, and a 256 MiB
                # free came back 0.95 s after it instead of after the 2 s delay. Every
                # scenario therefore starts once nothing is left to report.
                log.info("waiting for the boot-time reporting passes to finish", extra={"phase": "boot passes"})
                perblock.wait_reported(guest, run.order, run.ranges)
            log.info("waiting for the idle guest's RSS to settle", extra={"phase": "idle"})
            t = time.monotonic()
            run.settle(t, "idle RSS to settle")
            idle = s.since(time.monotonic() - STABLE_WINDOW_S)
            run.idle = s.latest()
            run.idle_noise = max(x.rss_mib for x in idle) - min(x.rss_mib for x in idle)
            yield run
        finally:
            if run.wl is not None:
                run.wl.close()


def time_to_fraction(samples, t0, peak, drop, frac):
    """Seconds from t0 until RSS first fell by frac * drop; None if nothing dropped."""
    if drop <= STABLE_EPS_MIB:
        return None
    for x in samples:
        if x.t >= t0 and peak - x.rss_mib >= frac * drop:
            return round(x.t - t0, 2)
    return None
