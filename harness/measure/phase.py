"""One measured release, typed: what Run.release (harness/scenarios/common.py) read before,
around and after it. Its JSON is the result's phase, as before (results/*.json, the stored
runs under tests/data); the judge (harness/verdict/prediction.py) adds its fields to that JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from harness.measure.prerelease import PreRecord


@dataclass(frozen=True)
class PhaseEnd:
    """How a phase ended (Run.phase_end): "scan" (reporting done: the model's last pass, then
    scans) or "stable" (RSS stable: no reporting); the scans are our captures after the release."""
    how: str
    scans: int = 1
    waited_s: float | None = None           # from the release to the phase's end
    model_last_pass_s: float | None = None  # the end plan's last predicted pass
    model_s: float | None = None            # the end plan's model run
    left_unreported: int | None = None      # pending blocks the last scan left
    landed_s: float | None = None           # RSS seen fallen after the model's previous pass (the first scan's wake)

    def to_json(self) -> dict:
        return {k: v for k, v in ((f.name, getattr(self, f.name)) for f in fields(self)) if v is not None}

    @classmethod
    def from_json(cls, d: dict | None) -> "PhaseEnd":
        d = d or {}
        return cls(how=d.get("how", "stable"), **{k: d[k] for k in ("scans", "waited_s", "model_last_pass_s",
                                                                        "model_s", "left_unreported", "landed_s")
                                                                        if k in d})


@dataclass(frozen=True)
class ModelInput:
    """The part of a phase the reference allocator reads: its before-the-release record, the
    guest's snapshot just before, the reporting order, and how many of our own captures follow
    the release (guest activity the model counts, known when it plans the phase's end)."""
    pre: PreRecord
    held: dict                              # guestfacts.snapshot_texts before the release
    reportable_order: int
    end: PhaseEnd

    @property
    def captures_after(self) -> int:
        """Our captures after the release, up to the last sample: the one right after it, and the
        scans that ended the phase (before the last sample). A phase that ended on stable RSS
        took its settled capture after the last sample."""
        return 1 + (self.end.scans if self.end.how == "scan" else 1)


@dataclass
class Phase:
    """One release: RSS around it (MiB; `samples` are [s after it, QEMU RSS, RAM mapping RSS]),
    the guest's snapshots and per-block captures right after it and once settled, and the
    workload's facts where a user's workload was released."""
    name: str
    freed_mib: float
    rss_peak_mib: float
    rss_after_mib: float
    drop_mib: float                         # peak - after, from the unrounded samples
    ram_rss_peak_mib: float
    ram_rss_after_mib: float
    ram_drop_mib: float
    reportable_mib: float                   # guest buddyinfo blocks >= the order, after - before
    reportable_order: int
    seconds_to_90pct: float | None
    samples: list
    snapshots: dict                         # "held" (before) and "freed" (after): snapshot texts
    carries_unreported: bool
    per_block: dict                         # perblock.summary
    first_capture_s: float                  # from the release to the capture after it
    end: PhaseEnd
    release_s: float                        # the action's own round trip
    release_at_s: float                     # from QEMU's start
    pre: PreRecord
    captures: dict                          # "freed" and "settled": perblock.Capture.to_json
    guest_stats: list | None = None         # balloon statistics rows (StatsPoller.to_row)
    guest_stats_settled: list | None = None
    freed_pfns: list | None = None          # a user's workload: its pages, read before the release
    pid: int | None = None                  # the exiting process (workload scenario)
    comm: str | None = None
    rss_anon_kib: int | None = None
    pids: list | None = None                # the released processes (workload with --release)
    freed_huge_pages: int | None = None
    workload_status: int | None = None      # the workload's exit status, on its last phase

    @property
    def model_input(self) -> ModelInput:
        return ModelInput(self.pre, self.snapshots["held"], self.reportable_order, self.end)

    def to_json(self) -> dict:
        d = {"phase": self.name, "freed_mib": self.freed_mib, "rss_peak_mib": self.rss_peak_mib,
             "rss_after_mib": self.rss_after_mib, "drop_mib": self.drop_mib,
             "ram_rss_peak_mib": self.ram_rss_peak_mib, "ram_rss_after_mib": self.ram_rss_after_mib,
             "ram_drop_mib": self.ram_drop_mib, "reportable_mib": self.reportable_mib,
             "reportable_order": self.reportable_order, "seconds_to_90pct": self.seconds_to_90pct,
             "samples": self.samples, "snapshots": self.snapshots, "carries_unreported": self.carries_unreported,
             "per_block": self.per_block, "first_capture_s": self.first_capture_s, "end": self.end.to_json(),
             "release_s": self.release_s, "release_at_s": self.release_at_s,
             "pre": self.pre.to_json(),
             "captures": self.captures, "guest_stats": self.guest_stats,
             "guest_stats_settled": self.guest_stats_settled}
        for k in ("freed_pfns", "pid", "comm", "rss_anon_kib", "pids", "freed_huge_pages", "workload_status"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Phase":
        """A phase as stored (every version with a `pre` record; the judge's fields are ignored)."""
        opt = {k: d[k] for k in ("guest_stats", "guest_stats_settled", "freed_pfns", "pid", "comm",
                                 "rss_anon_kib", "pids", "freed_huge_pages", "workload_status") if k in d}
        return cls(name=d.get("phase", "main"), freed_mib=d["freed_mib"], rss_peak_mib=d["rss_peak_mib"],
                   rss_after_mib=d["rss_after_mib"], drop_mib=d["drop_mib"],
                   ram_rss_peak_mib=d.get("ram_rss_peak_mib", 0.0), ram_rss_after_mib=d.get("ram_rss_after_mib", 0.0),
                   ram_drop_mib=d.get("ram_drop_mib", 0.0), reportable_mib=d.get("reportable_mib", 0.0),
                   reportable_order=d["reportable_order"], seconds_to_90pct=d.get("seconds_to_90pct"),
                   samples=d.get("samples", []), snapshots=d.get("snapshots", {}),
                   carries_unreported=bool(d.get("carries_unreported")), per_block=d.get("per_block", {}),
                   first_capture_s=d.get("first_capture_s", 0.0), end=PhaseEnd.from_json(d.get("end")),
                   release_s=d.get("release_s", 0.0), release_at_s=d.get("release_at_s", 0.0),
                   pre=PreRecord.from_json(d["pre"]), captures=d.get("captures", {}), **opt)


@dataclass(frozen=True)
class RunFacts:
    """What the model reads of a run besides its phases' records (the result's top level)."""
    kernel: str
    backend: str = "anon"
    host_page_size: int = 4096
    reporting_negotiated: bool = True
    idle_noise_mib: float | None = None     # this run's own idle RSS noise (the rss_noise term)

    @classmethod
    def of(cls, d: "RunFacts | dict") -> "RunFacts":
        """From a result (or Run.model_facts); a RunFacts as it is."""
        if isinstance(d, RunFacts):
            return d
        return cls(kernel=d["kernel"], backend=d.get("backend", "anon"), host_page_size=d.get("host_page_size", 4096),
                   reporting_negotiated=bool(d.get("reporting_negotiated", True)),
                   idle_noise_mib=d.get("idle_noise_mib"))


def main_phase(result: dict) -> dict:
    """A result's main phase (its last, as the scenario ran them): where the headline figures
    are, once (Run.result keeps no copy of them at the top)."""
    phases = result.get("phases")
    if not phases:
        raise ValueError("a result without phases (before 2026-12: re-run it)")
    return phases[-1]
