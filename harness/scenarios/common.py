"""What every scenario does: settle, then measure phases that release guest memory.

A phase: snapshot the guest (held) -> the action that releases memory ->
snapshot (freed) -> wait until QEMU's RSS settles -> the numbers. All waits are
conditions with deadlines; harness.verdict.prediction later runs the model on each
phase's snapshots.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from contextlib import contextmanager, nullcontext

from harness.measure import guestfacts, hostmem, pagemap, perblock, procfs

from harness.model.kernel import kernel_version
from harness.verdict import prediction
from harness.measure.phase import ModelInput, Phase, PhaseEnd, RunFacts
from harness.measure.prerelease import PreRecord, fault_nodes_field, pcp_field, reply_field, runs_of
from harness.measure.stats_poller import StatsPoller

log = logging.getLogger(__name__)

# Stability: RSS counts as settled when it moved less than STABLE_EPS_MIB over
# STABLE_WINDOW_S. The window must exceed the kernel's 2 s reporting delay
# (mm/page_reporting.c PAGE_REPORTING_DELAY) plus one pass, or the flat stretch
# between two passes would pass for the end.
STABLE_WINDOW_S = 5.0
STABLE_EPS_MIB = 4.0
SETTLE_TIMEOUT_S = 120.0
# A restored guest was saved with nothing left to report (harness/vm/saved_guest.py) and the
# scan before the idle window says so again, so no pass can move its RSS: the window only
# measures the run's own noise and activity rates: 1 s is 10 samples and one of each of the
# guest's 1 Hz events (the balloon statistics the poller asks for every second).
IDLE_WINDOW_RESTORED_S = 1.0
# A phase ends once reporting is done (Run.phase_end): at the model's last predicted pass
# plus END_MARGIN_S (measured: the last pass landed 0.15-0.3 s after the model's under TCG),
# one scan, then RSS_STOP_S of samples within STABLE_EPS_MIB. A block the scan sees reported
# is already discarded: QEMU discards a report's ranges before it returns the buffer
# (hw/virtio/virtio-balloon.c virtio_balloon_handle_report), the driver waits for that
# (virtballoon_free_page_report) and only then page_reporting_drain marks the pages reported.
# So the samples after the scan only show RSS is not mid-move: 3 samples (hostmem.Sampler.period).
END_MARGIN_S = 0.5
# 6.12: vmstat_update runs again on a CPU at least 750 ms after it ran (round_jiffies_relative
# rounds its one-second delay down by at most a quarter second); 50 ms of that kept as margin
SYNC_SAFE_MS = 700
RSS_STOP_S = 0.3
# Passes come REPORTING_DELAY_S apart: a fall of RSS later than half a delay before the model's
# last pass is that pass's (the one before it landed 1.5 s earlier), so the first scan need not
# wait for END_MARGIN_S (Run.phase_end).
LANDED_WINDOW_S = 1.0
REPORTING_DELAY_S = prediction.REPORTING_DELAY_S  # the next pass, if one is due
STATS_WAIT_S = 3.0  # two of the device's intervals (stats_poller.POLL_S) for the guest's next statistics
# The workload runs pinned here, so its frees go onto this CPU's per-cpu lists, which the
# model reads before the release (harness/model/release.py).
WORKLOAD_CPU = 0
# e2emem faults in this many new pages right after each unmap (guest_images/src/e2emem.c
# SETTLE_FAULTS): 6.1's free_factor back to 0 and 6.12's free_count under batch, so no
# free_high drain can follow the release.
WORKLOAD_SETTLE_FAULTS = 6


class Run:
    """One guest under measurement: its facts, its sampler, its workload process."""

    def __init__(self, guest, sampler):
        self.g, self.s = guest, sampler
        self.phases: list[Phase] = []
        negotiated, order, iomem = guestfacts.start_facts(guest)  # one round trip (~0.07 s)
        self.facts = {"reporting_negotiated": negotiated, "reporting_order": order}
        self.order = guestfacts.effective_order(self.facts["reporting_order"])
        self.wl = None
        self.ranges = pagemap.layout(guest, iomem)  # guest-physical -> host mapping, for per-block captures
        # where the captures find the per-cpu lists: found now, so that no measured capture
        # carries its cost (the kernel's BTF through SSH: ~570 pages allocated in the guest)
        perblock.pcp_argv(guest)
        self.activity: dict = {}  # guest activity rates measured in the idle window (see measuring)
        self.allocated = False  # the workload allocated since the last release (see pre_release)
        self.last_release = 0.0  # monotonic time of the last release (own_growth measures from it)
        # QEMU's own memory (RSS less RAM) from the last phase's peak to its end: it rose at the
        # releases of an integrity run, more each cycle (0.2 ... 2.0, 2.0, 4.4 MiB), often all at
        # once at the release, which a stretch measured from the release then misses
        self.last_own_rise = 0.0
        self.last_unmapped: tuple = ()  # the last release's unmapped pages (PreRecord.previous_unmapped)
        # free blocks >= the order left pending once passes were over (the boot-time ones, or a
        # phase's): nothing asks a pass for them (perblock.wait_reported), so they ask none
        self.stuck: set[tuple[int, int]] = set()
        self.workload_s = 0.0  # seconds in the workload's allocating commands (harness/report/timings.py)
        self.stats: StatsPoller | None = None  # the guest's balloon statistics, polled (see measuring)
        # 6.12 lowers per-cpu highs once a second (decay_pcp_high): e2emem's `sync` waits for a
        # step before each unmap release (Run.release)
        self.decay_sync = kernel_version(guest.image.kernel_release) >= (6, 2)

    def ask(self, line: str) -> str:
        """A command to the guest workload (guest_images/src/e2emem.c)."""
        if self.wl is None:
            self.wl = self.g.ssh.start("e2emem")
            self.wl.ask(f"cpu {WORKLOAD_CPU if self.g.cfg.smp > 1 else 0}")
        if line.split()[0] not in ("touch", "fill", "alloc"):
            return self.wl.ask(line)
        self.allocated = True
        t = time.monotonic()
        try:
            return self.wl.ask(line)
        finally:
            self.workload_s += time.monotonic() - t

    def pre_release(self, unmaps: str | None, frees=None, kind: str | None = None) -> tuple[dict, dict, dict]:
        """What the model may know, read before the release: the guest's memory files (the
        held snapshot), the workload's mapped pages and the ones the release unmaps (its own
        pagemap, in the order munmap frees them), the guest's free blocks with the host's
        residency, and what one capture costs in guest activity. Returns PreRecord's fields
        but its times, when each input was read (monotonic), and the snapshot."""
        cpu = WORKLOAD_CPU if self.g.cfg.smp > 1 else 0
        out: dict = {"cpu": cpu, "read_at": {}, "kind": kind or ("munmap" if frees is None else "drop_caches")}
        # Pages on the workload CPU's per-cpu lists are free pages /proc cannot place. An
        # allocation takes the order-0 movable ones first (rmqueue_pcplist, newest first), so
        # after the workload allocated on its pinned CPU what is left there is at most a refill
        # batch and other lists' pages (measured: allocating as many pages as the count did not
        # lower it). After a release with no allocation since, they are its own residue.
        out["pcp_taken"] = self.allocated
        if not self.allocated and self.last_unmapped:
            out["previous_unmapped"] = self.last_unmapped
        # our SSH sessions and the interrupts run on the last CPU (guest_images/rootfs/etc/rcS)
        out["ours_cpu"] = self.g.cfg.smp - 1
        out["ours_node"] = next(n for n in range(self.g.cfg.numa_nodes) if out["ours_cpu"] in self.g.cfg.node_cpus(n))
        if unmaps is not None:              # e2emem's own unmap, and its faults after it
            out["faults_after"] = WORKLOAD_SETTLE_FAULTS
        if unmaps is not None and frees is None:
            # e2emem reads its pagemap on its CPU while the snapshot runs on ours (~0.2 s each)
            region = unmaps.split()[0]
            self.wl.send(f"pfns {region}")  # e2emem made the region: it runs
        out["read_at"]["snapshot"] = time.monotonic()
        held = guestfacts.snapshot_texts(self.g)
        if frees is not None:
            out["mapped"] = out["unmapped"] = runs_of(frees())
            out["read_at"]["mapped"] = out["read_at"]["unmapped"] = time.monotonic()
        elif unmaps is not None:
            whole = self.wl.reply(f"pfns {region}")
            out["mapped"] = runs_of(pfn_runs(whole))
            out["read_at"]["mapped"] = time.monotonic()
            part = self.ask(f"pfns {unmaps}") if unmaps != region else whole
            out["unmapped"] = runs_of(pfn_runs(part))
            # the PTE tables that unmap frees after the pages, from e2emem's own maps
            out["page_tables"] = reply_field(part, "pt")
            out["read_at"]["unmapped"] = time.monotonic()
            if len(unmaps.split()) == 3:    # `punch NAME KEEP GAP`: one munmap per GAP KiB hole
                out["unmap_chunk"] = int(unmaps.split()[2]) * 1024 // pagemap.PAGE
        # A block >= the order pending here that a free made (perblock.asked) means the free
        # already asked the worker for a pass, due 2 s after that ask: the release would find
        # it due and every pass come early by an unknown amount. Seen on restored guests: the
        # held snapshot's SSH command splits and re-merges one order-10 block (pfn 334848,
        # 2 GiB, 6.1), its pass 1.4 s after the release. So wait for that pass and read again;
        # a block still pending after a delay and a pass is one nothing asks a pass for
        # (perblock.wait_reported), and stays.
        # A migration destination's first pass came 1.1 s early once (90% at 0.89 s against
        # 2.005) after the release found one block pending the host held none of: there pages
        # in use with zero content arrived as the zero page (not held), and their free asks.
        # Restored guests load the same way, yet there the unheld block stayed pending with no
        # pass in every run (pfn 284160 3.5 s in 5 of 5, pfn 351744 3.2 s in 2 of 2): the rule is
        # off on destinations alone (`incoming` is set on both, and turned it off on restores).
        out["unheld_ask_none"] = not self.g.destination
        t_wait = time.monotonic()
        deadline = t_wait + REPORTING_DELAY_S + 2 * END_MARGIN_S
        first_capture = None
        while True:
            vm0 = self.g.run("cat /proc/vmstat").stdout
            cap = perblock.capture(self.g, self.order, self.ranges)
            out["read_at"]["capture"] = time.monotonic()
            first_capture = first_capture or out["read_at"]["capture"]
            vm1 = self.g.run("cat /proc/vmstat").stdout
            due = perblock.asked(cap, self.stuck, out["unheld_ask_none"])
            # what each capture found pending and asked: [seconds into the wait, [[head, order, held pages], ...]]
            out.setdefault("waited_for", []).append(
                [round(out["read_at"]["capture"] - t_wait, 2), [[b.head, b.order, cap.held_in(b.head, b.end)] for b in due]])
            if not self.facts["reporting_negotiated"] or not due or time.monotonic() > deadline:
                break
            time.sleep(END_MARGIN_S)  # the pass is due within the delay; a capture costs ~0.2 s of guest CPU
        out["worker_wait_s"] = round(out["read_at"]["capture"] - first_capture, 2)  # 0: nothing was pending
        out["capture"] = cap.to_json()
        out["capture_vmstat"] = (vm0, vm1)
        out["stuck"] = tuple(sorted(self.stuck))
        out["waited_for"] = tuple(out["waited_for"])
        return out, out.pop("read_at"), held

    def own_growth(self) -> float:
        """MiB QEMU's own memory (its RSS less guest RAM's share and TCG's cache) grew from the
        previous release (the sampler's first sample before the first) to now: a stretch that
        holds a whole phase and the work before this one. From the run's start it added up
        over the integrity scenario's ten cycles (1.6 MiB at the first, 16.2 at the tenth, one
        cycle's own stretch 0.1-4.9). hugetlb RAM is outside Rss, other backends' inside."""
        return hostmem.own_growth([self._own_mib(x) for x in self.s.since(self.last_release)])

    def _own_mib(self, x: hostmem.Sample) -> float:
        """QEMU's own memory in a sample: its RSS less guest RAM's share (hugetlb RAM is outside Rss)."""
        return x.rss_mib - (0.0 if self.g.cfg.backend == "hugetlbfs" else x.ram_rss_mib)

    def settle(self, since: float, what: str, window: float = STABLE_WINDOW_S) -> hostmem.Sample:
        return self.s.wait_for(hostmem.stable_for(window, STABLE_EPS_MIB, since), SETTLE_TIMEOUT_S, what)

    def release(self, name: str, action, freed_mib: float, carries_unreported: bool = False,
                unmaps: str | None = None, frees=None, freed_pfns: list | None = None) -> Phase:
        """Measure one phase: `action()` releases about `freed_mib` MiB in the guest.

        unmaps: the e2emem region the action unmaps ("a"), or its part ("a 1024 1024": what
        `punch a 1024 1024` unmaps); its pages are read before the release for the model.
        frees: instead, a function returning the guest's reply listing the pages the action
        frees (`e2epfn cache`), for releases that are not the workload's unmap.
        carries_unreported: nothing was allocated since the previous release, so
        what it left resident and unreported is released again here (see prediction.py).
        freed_pfns: the guest pages the release will free, as (first pfn, pages[, huge]) runs,
        when they are known beforehand (a user's workload: its pages from /proc/PID/pagemap,
        freed by its exit as by an unmap)."""
        if unmaps is None and frees is None and freed_pfns is None:
            raise ValueError(f"release {name!r}: say what it frees (unmaps, frees or freed_pfns): the model "
                             "predicts from those pages, read before the release")
        # The previous release's frees may have asked for a pass (a block >= the order, split
        # again before our capture could see it pending): it runs 2 s after the ask. A fragment
        # free-rest 1.6 s after its punch had its first pass 1.05 s early with nothing pending
        # at its capture. So no release comes sooner than a delay and a margin after the last.
        if self.last_release:
            time.sleep(max(0.0, self.last_release + REPORTING_DELAY_S + END_MARGIN_S - time.monotonic()))
        if freed_pfns is not None:
            fields, read_at, held = self.pre_release(None, lambda: freed_pfns, kind="munmap")
        else:
            fields, read_at, held = self.pre_release(unmaps, frees)
        # 6.12: e2emem waits for vmstat's decay step (at most 1.3 s) so that none falls inside
        # the release, which follows within ~0.1 s (the model's runs then leave one out)
        sync = self.wl.ask("sync") if self.decay_sync and unmaps is not None else None
        synced = sync is not None and reply_field(sync, "synced") == 1
        if sync is not None:
            log.debug("%s: e2emem sync: %s", name, sync)
        t0 = time.monotonic()
        peak = self.s.wait_for(lambda xs: xs[-1].t >= t0, 10, "a sample before the release")
        log.info("%s: releasing %g MiB", name, freed_mib,
                 extra={"phase": name, "peak_mib": peak.rss_mib, "freed_mib": freed_mib})
        t_action = time.monotonic()
        read_at_s = {k: round(v - t_action, 3) for k, v in read_at.items()}
        pre = PreRecord(**fields, read_at_s=read_at_s,
                        qemu_own_growth_mib=round(max(self.own_growth(), self.last_own_rise), 1),
                        activity=self.activity)
        reply = action()
        release_s = time.monotonic() - t_action
        self.last_release = t_action
        if isinstance(reply, str):          # e2emem's reply: what it read and did around its unmap
            log.debug("%s: e2emem: %s", name, reply[:200])
            pcp, pcp_s = pcp_field(reply)
            if pcp_s is not None:           # its CPU's lists, read before the unmap
                # the run sync saw holds the next a step away only if the unmap ended within
                # SYNC_SAFE_MS of the poll before it (a starved vCPU sees it late)
                age = reply_field(reply, "sync_age_ms")
                pre = dataclasses.replace(pre, pcp_at_release=pcp, read_at_s={**pre.read_at_s, "pcp": -pcp_s},
                                          decay_synced=synced and age is not None and age <= SYNC_SAFE_MS,
                                          sync_age_ms=age)
            if "faults_after" in fields:    # the nodes its faults were bound to, its CPU's node
                fnodes, cpu_node = fault_nodes_field(reply)
                pre = dataclasses.replace(pre, fault_nodes=fnodes, cpu_node=cpu_node)
        self.allocated = False
        self.last_unmapped = pre.unmapped if pre.kind == "munmap" else ()
        freed = guestfacts.snapshot_texts(self.g)
        # The guest's free blocks and the host's residency, block by block, right
        # after the release (the model's exact input) and once RSS has settled.
        cap_freed = perblock.capture(self.g, self.order, self.ranges)
        first_capture_s = time.monotonic() - t_action
        # one scan presumed (the phase's captures are activity the model counts): the judgement
        # reuses this model run when the phase ends so
        after, cap_settled, t_settled, end = self.phase_end(
            name, t0, t_action, ModelInput(pre, held, self.order, PhaseEnd("scan", scans=1)))
        samples = self.s.since(t0)
        # the guest's own count of free memory once reporting is over: its first answer after
        # the settled capture began (the model's free pages are checked against it)
        stat_settled = self.stats.next_after(t_settled, STATS_WAIT_S) if self.stats else None
        reportable = (procfs.free_mib_at_or_above(procfs.parse_buddyinfo(freed["buddyinfo"]), self.order)
                      - procfs.free_mib_at_or_above(procfs.parse_buddyinfo(held["buddyinfo"]), self.order))
        drop = peak.rss_mib - after.rss_mib
        self.last_own_rise = max(0.0, self._own_mib(after) - self._own_mib(peak))
        phase = Phase(
            name=name, freed_mib=freed_mib,
            rss_peak_mib=round(peak.rss_mib, 1), rss_after_mib=round(after.rss_mib, 1), drop_mib=round(drop, 1),
            ram_rss_peak_mib=round(peak.ram_rss_mib, 1), ram_rss_after_mib=round(after.ram_rss_mib, 1),
            ram_drop_mib=round(peak.ram_rss_mib - after.ram_rss_mib, 1),
            reportable_mib=round(reportable, 1), reportable_order=self.order,
            seconds_to_90pct=time_to_fraction(samples, t0, peak.rss_mib, drop, 0.9),
            samples=[[round(x.t - t0, 2), round(x.rss_mib, 1), round(x.ram_rss_mib, 1)] for x in samples],
            snapshots={"held": held, "freed": freed}, carries_unreported=carries_unreported,
            per_block=perblock.summary(cap_freed, cap_settled, self.g.cfg.reporting),
            first_capture_s=round(first_capture_s, 2),  # from the release; within the 2 s delay?
            end=end,
            release_s=round(release_s, 3),  # the action's SSH round trip: munmap and all
            release_at_s=round(t_action - self.g.t_start, 3),  # from QEMU's start (harness/report/timings.py)
            pre=pre,
            captures={"freed": cap_freed.to_json(), "settled": cap_settled.to_json()},
            # [s after the release, QEMU's receipt (epoch s), free, available, caches MiB]
            guest_stats=[x.to_row(t0) for x in self.stats.since(t0)] if self.stats else None,
            guest_stats_settled=stat_settled.to_row(t0) if stat_settled else None,
            freed_pfns=[list(r) for r in freed_pfns] if freed_pfns is not None else None)
        self.phases.append(phase)
        self._keep(phase)
        log.info("%s: drop %.1f MiB", name, drop, extra={"phase_done": name})
        return phase

    def model_facts(self) -> RunFacts:
        """What the model reads of the run besides a phase's own records."""
        g = self.g
        return RunFacts(kernel=g.image.kernel_release, backend=g.cfg.backend, host_page_size=g.cfg.host_page_size,
                        reporting_negotiated=bool(self.facts["reporting_negotiated"]),
                        idle_noise_mib=round(getattr(self, "idle_noise", 0.0), 1))

    def phase_end(self, name: str, t0: float, t_action: float, inputs: ModelInput):
        """Wait until reporting is done: (the last sample, the settled capture, when that capture
        began, how it ended). With reporting: from the model's last predicted pass (its
        before-the-release inputs only), one scan; done when nothing the model leaves unreported
        is pending, else the next pass (2 s) and scan again; a pending set unchanged through a
        delay and a pass is done too (nothing asks for a pass for it: perblock.wait_reported).
        Then RSS_STOP_S of samples within STABLE_EPS_MIB. Without reporting nothing moves: RSS
        stable for STABLE_WINDOW_S, as for the idle guest."""
        if not self.facts["reporting_negotiated"]:
            log.info("%s: waiting for RSS to settle", name)
            after = self.settle(t0, f"RSS to settle after {name}")
            t_settled = time.monotonic()
            cap = perblock.capture(self.g, self.order, self.ranges)
            return after, cap, t_settled, PhaseEnd("stable", scans=1, waited_s=round(t_settled - t_action, 2))
        plan = prediction.end_plan(inputs, self.model_facts())
        t_plan = time.monotonic() - t_action
        log.info("%s: the model's last pass ends %.2f s after the release", name, plan.last_pass_s)
        deadline = t_action + SETTLE_TIMEOUT_S
        margin_wake = t_action + plan.last_pass_s + END_MARGIN_S
        # The first scan as soon as RSS has fallen after the model's previous pass
        # (LANDED_WINDOW_S), at the latest at margin_wake: the last pass's discards, seen
        # 0.15-0.3 s after the model's pass. A pass's fall showed in one 0.1 s sample in 131 of
        # 132 falls (stored runs and results/, 2026-12-07); one caught mid-pass whose scan sees
        # blocks pending is scanned again at margin_wake.
        landed = (self.s.wait_until(hostmem.fell_after(t_action + plan.last_pass_s - LANDED_WINDOW_S, STABLE_EPS_MIB),
                                    margin_wake) if plan.last_pass_s > 0 else None)
        wake = time.monotonic() if landed else margin_wake
        scans, changed, last_left = 0, 0.0, None
        while True:
            time.sleep(max(0.0, wake - time.monotonic()))
            t_scan = time.monotonic()
            cap = perblock.capture(self.g, self.order, self.ranges)
            scans += 1
            left = {(b.head, b.order) for b in perblock.pending(cap)} - plan.unreported
            if left != last_left:
                changed, last_left = t_scan, left
            elif t_scan - changed >= REPORTING_DELAY_S + END_MARGIN_S:
                break  # the same blocks pending through a delay and a pass: stuck
            if not left:
                break
            if t_scan > deadline:
                raise TimeoutError(f"{name}: {len(left)} free blocks >= order {self.order} still unreported "
                                   f"{SETTLE_TIMEOUT_S:.0f} s after the release")
            # a scan woken by RSS before the margin: the pass may still be marking its blocks
            wake = margin_wake if t_scan < margin_wake else t_scan + REPORTING_DELAY_S + END_MARGIN_S
        self.stuck = {(b.head, b.order) for b in perblock.pending(cap)}
        # RSS still since the fall that woke the first scan (the scan only confirms it), else since the scan
        stop_since = landed.t if landed and scans == 1 else t_scan
        after = self.s.wait_for(hostmem.stable_for(RSS_STOP_S, STABLE_EPS_MIB, stop_since), SETTLE_TIMEOUT_S,
                                f"RSS to stop after {name}")
        return after, cap, t_scan, PhaseEnd("scan", scans=scans, waited_s=round(time.monotonic() - t_action, 2),
                                            model_last_pass_s=plan.last_pass_s, model_s=round(t_plan, 3),
                                            left_unreported=len(last_left or ()),
                                            landed_s=round(landed.t - t_action, 2) if landed else None)

    def _keep(self, phase: Phase) -> None:
        """Each phase's snapshots and captures go to the guest's run directory as soon as they
        are measured, so a run cut short later still has them."""
        d = self.g.rundir / "phases"
        d.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", phase.name)
        (d / f"{len(self.phases):02d}-{name}.json").write_text(json.dumps(phase.to_json()) + "\n")

    def result(self, scenario: str, **extra) -> dict:
        """The run's facts and its phases, each figure once: a phase's in the phase (the main
        one is the last, harness.measure.phase.main_phase)."""
        g = self.g
        self.g.check_healthy()
        phases = [p.to_json() for p in self.phases]
        return {
            "scenario": scenario, "accel": g.cfg.accel, "kernel": g.image.kernel_release, "qemu": g.qemu.version,
            "memory_mib": g.cfg.memory_mib, "smp": g.cfg.smp, "reporting": g.cfg.reporting,
            "backend": g.cfg.backend, "host_page_size": g.cfg.host_page_size, "numa_nodes": g.cfg.numa_nodes,
            "host_thp": g.cfg.host_thp, **self.facts,
            # the model's rss_noise term: this run's own idle noise (every scenario has one)
            "idle_noise_mib": round(getattr(self, "idle_noise", 0.0), 1), "boot_s": round(g.boot_s, 2),
            "start_mode": g.start_mode, "start_note": g.start_note,
            # harness/report/timings.py completes these once the model has run (prediction.predict)
            "timings": {"start": g.start_mode, **g.timings, "workload_s": round(self.workload_s, 3),
                        "qemu_start_monotonic": g.t_start},
            **extra, "phases": phases,
        }


@contextmanager
def measuring(guest, progress=None, stats: bool = True):
    """A Run with its sampler going, once the idle guest's RSS has settled. Samples are
    kept in the guest's run directory (samples.csv) as they come. Progress goes to logging
    (`progress` is accepted and unused, for scenarios written before that).
    stats: poll the guest's balloon statistics all along (the stats scenario sets its own
    interval, and reads what the driver sent before any was asked)."""
    with hostmem.Sampler(guest.pid, guest.ram_hvas(), csv_path=guest.rundir / "samples.csv") as s, \
            (StatsPoller(guest) if stats else nullcontext()) as poller:
        run = Run(guest, s)
        run.stats = poller
        try:
            if run.facts["reporting_negotiated"]:
                # The boot-time passes report all free memory 256 MiB or so at a time
                # (~16 s for 2 GiB) without moving RSS (it was never touched). A release
                # during them finds the worker already scheduled, not idle, and a 256 MiB
                # free came back 0.95 s after it instead of after the 2 s delay. Every
                # scenario therefore starts once nothing is left to report. A restored guest
                # was saved so (harness/vm/guest.py _build_saved), with what was left pending
                # then: it needs no scan here (~0.25 s); a block a free asked for since is
                # waited for before the release (Run.pre_release).
                saved = (guest.saved_meta or {}) if guest.start_mode == "restore" else {}
                if "stuck" in saved:
                    run.stuck = {(h, o) for h, o in saved["stuck"]}
                else:
                    log.info("waiting for the boot-time reporting passes to finish", extra={"phase": "boot passes"})
                    done = perblock.wait_reported(guest, run.order, run.ranges)
                    run.stuck = {(b.head, b.order) for b in perblock.pending(done)}
            log.info("waiting for the idle guest's RSS to settle", extra={"phase": "idle"})
            window = IDLE_WINDOW_RESTORED_S if guest.start_mode == "restore" else STABLE_WINDOW_S
            t = time.monotonic()
            vm_a = guest.run("cat /proc/vmstat").stdout
            vm0 = guest.run("cat /proc/vmstat").stdout  # back to back: one read's own cost (prediction.idle_rates)
            t_window = time.monotonic()
            run.settle(t, "idle RSS to settle", window)
            vm1 = guest.run("cat /proc/vmstat").stdout
            run.activity = {"vmstat": [vm0, vm1], "seconds": round(time.monotonic() - t_window, 2),
                            "read_cost": [vm_a, vm0]}
            idle = s.since(time.monotonic() - window)
            run.idle = s.latest()
            run.idle_noise = max(x.rss_mib for x in idle) - min(x.rss_mib for x in idle)
            yield run
        finally:
            if run.wl is not None:
                run.wl.close()


def pfn_runs(reply: str) -> list[list]:
    """e2emem's `pfns` reply (and e2epfn's `cache`) -> [[pfn, pages, huge], ...] in the order
    it listed them: "ok key=N ... PFN+N[h] ..."""
    out = []
    for tok in reply.split()[1:]:
        if "=" in tok:
            continue
        huge = tok.endswith("h")
        pfn, _, n = tok.rstrip("h").partition("+")
        out.append([int(pfn), int(n), huge])
    return out


def time_to_fraction(samples, t0, peak, drop, frac):
    """Seconds from t0 until RSS first fell by frac * drop; None if nothing dropped."""
    if drop <= STABLE_EPS_MIB:
        return None
    for x in samples:
        if x.t >= t0 and peak - x.rss_mib >= frac * drop:
            return round(x.t - t0, 2)
    return None
