"""Where a verdict's time goes, and its floor: the `timings` object of a result (seconds).

start_s      QEMU start to SSH-ready, `start` saying "boot" or "restore"
workload_s   the workload's own allocating commands (touch, fill, alloc)
release_at_s QEMU start to the (last) release
first_report_s, last_report_s
             after the (last) release: the first sample STEP_MIB below the peak, and the
             first at the final level (within STEP_MIB of it)
end_s        the release to the phase's end (harness/scenarios/common.py Run.phase_end)
model_s      the model's run on the result (prediction.predict)
verdict_s    QEMU start to the verdict
floor_s      what no harness can beat on this machine: a restore's start (restore_s) + the
             workload's own time + the model's last predicted pass after the release
"""
from __future__ import annotations

from harness.measure.phase import main_phase

STEP_MIB = 4.0  # the phase end's stability bound (common.STABLE_EPS_MIB): smaller moves are noise


def report_times(samples: list, peak: float, after: float, col: int = 1) -> tuple[float | None, float | None]:
    """Pure: (first, last) report seconds from a phase's samples [t, rss, ram, ...]: the first
    sample STEP_MIB below the peak, the first within STEP_MIB of the final level. None when
    nothing dropped by more than STEP_MIB."""
    if peak - after <= STEP_MIB:
        return None, None
    first = next((s[0] for s in samples if peak - s[col] >= STEP_MIB), None)
    last = next((s[0] for s in samples if s[col] - after <= STEP_MIB), None)
    return first, last


def floor_s(restore_s: float, workload_s: float, last_pass_s: float) -> float:
    """Pure: the same run's floor."""
    return restore_s + workload_s + last_pass_s


def of(result: dict, model_s: float, verdict_s: float | None) -> dict:
    """Pure: the timings of a judged result (its last phase is the main one)."""
    t = dict(result.get("timings") or {})
    ph = main_phase(result)
    col, peak, after = ((2, ph.get("ram_rss_peak_mib"), ph.get("ram_rss_after_mib")) if ph.get("metric") == "mapping"
                        else (1, ph.get("rss_peak_mib"), ph.get("rss_after_mib")))
    if peak is not None and ph.get("samples"):
        t["first_report_s"], t["last_report_s"] = report_times(ph["samples"], peak, after, col)
    if "release_at_s" in ph:
        t["release_at_s"] = ph["release_at_s"]
    end = ph.get("end") or {}
    if "waited_s" in end:
        t["end_s"] = end["waited_s"]
    t["model_s"] = round(model_s, 3)
    if verdict_s is not None:
        t["verdict_s"] = round(verdict_s, 2)
    passes = (ph.get("model") or {}).get("passes") or []
    last_pass = max((p["t_end"] for p in passes), default=0.0)
    restore_s = t.get("restore_s", t.get("start_s", 0.0) if t.get("start") == "restore" else None)
    if restore_s is not None:
        t["floor_s"] = round(floor_s(restore_s, t.get("workload_s", 0.0), last_pass), 2)
    return t
