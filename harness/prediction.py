"""Measured -> predicted: run the model on a result's own snapshots and judge the measurement.

Pure: a result dict (as the scenario returns it, or as saved in results/*.json)
in, prediction fields out. `balloon-e2e predict` replays saved results through
it with other kernel constants (what-ifs).
"""
from __future__ import annotations

from .config import model_host
from .model import ReportingParams, ResidentMap, predict_touch_free, verdict
from .perblock import Capture
from .snapshot import snapshot_from_capture

# Measured RSS noise of the QEMU process (README "Measured here"): an idle
# guest's RSS moved by 0-2.3 MiB over 5 s in 12 runs; a drop is the difference
# of two samples, so it carries up to twice 2.5 MiB.
NOISE_MIB = 5.0


def predict_phase(phase: dict, facts: dict, params: ReportingParams | None = None,
                  resident_freed_mib: float | None = None) -> dict:
    """Prediction fields for one phase (its snapshots, freed_mib, drop_mib) of a run with `facts`.

    resident_freed_mib: freed memory still resident on the host when the phase
    starts its reports (default: what this phase freed)."""
    held, freed = phase["snapshots"]["held"], phase["snapshots"]["freed"]
    # With reporting off sysfs reads no usable order; use the yardstick's (the
    # order registration would have picked).
    order = phase["reportable_order"]
    before = snapshot_from_capture(held, reporting_order=order)
    after = snapshot_from_capture(freed, reporting_order=order)
    exact = {}
    if "captures" in phase:
        # The exact path: the guest's real free blocks right after the release and
        # which of their pages the host held then (kpageflags x QEMU pagemap).
        cap = Capture.from_json(phase["captures"]["freed"])
        exact = {"blocks": cap.blocks, "resident": ResidentMap.from_bytes(cap.held)}
    # A file on tmpfs is discarded like memfd; hugetlb pages are outside Rss, so only
    # the guest RAM mapping can move (config.model_host).
    backend, metric = model_host(facts.get("backend", "anon"))
    p = predict_touch_free(
        before, after, kernel=facts["kernel"], order=order,
        freed_mib=phase["freed_mib"] if resident_freed_mib is None else resident_freed_mib, **exact,
        noise_mib=NOISE_MIB, backend=backend, metric=metric, host_page_size=facts.get("host_page_size", 4096),
        params=params or ReportingParams(),
        # With reporting off no report reaches QEMU: for the host that is the
        # same as a QEMU that discards nothing.
        discard_inhibited=not facts["reporting_negotiated"])
    j = p.to_json()
    return {
        "predicted_mib": j["expected_mib"],
        "predicted_lo_mib": j["lo_mib"],
        "predicted_hi_mib": j["hi_mib"],
        "predicted_seconds_to_90pct": j["seconds_to_90pct"],
        "terms": j["terms"],
        "predicted_curve": j["curve"],
        "model": {k: j[k] for k in ("per_zone", "per_order", "passes", "why")},
        "metric": metric,
        "verdict": verdict(phase["drop_mib" if metric == "rss" else "ram_drop_mib"], p),
    }


def predict(result: dict, params: ReportingParams | None = None) -> dict:
    """Predict every phase of a result and set the top-level fields (both in
    place): the main (last) phase's prediction, and a verdict that is `within`
    only if every phase is. Returns those top-level fields."""
    phases = result.get("phases") or [result]
    unreported = 0.0  # freed memory the model says stayed resident (below the order, on pcp lists)
    for ph in phases:
        # A phase that follows another release with no allocation between them
        # (fragment's free-rest after its punch) also releases what stayed
        # resident from that one: merged with the new frees it becomes reportable.
        resident = ph["freed_mib"] + (unreported if ph.get("carries_unreported") else 0.0)
        ph.update(predict_phase(ph, result, params, resident))
        ph["model_resident_freed_mib"] = round(resident, 1)
        unreported = max(0.0, resident - ph["predicted_mib"])
    top = {k: v for k, v in phases[-1].items() if k.startswith("predicted_") or k in ("terms", "model", "metric")}
    top["verdict"] = "within" if all(ph["verdict"] == "within" for ph in phases) else "outside"
    top["phase_verdicts"] = {ph.get("phase", "main"): ph["verdict"] for ph in phases}
    result.update(top)
    return top


def plateaus(curve: list, jitter_s: float, gap_s: float = 0.1) -> list[tuple[float, float, float]]:
    """Pure: a predicted step curve -> (t_from, t_to, MiB) windows where the drop should sit still.

    Points closer than gap_s belong to one pass (its reports land back to back).
    A window starts jitter_s after a pass and ends jitter_s before the next, so
    the pass's own timing uncertainty never falls inside it. The last window
    lasts 1 s.
    """
    passes: list[list[float]] = []  # [t_first, t_last, value]
    for t, c in curve:
        if passes and t - passes[-1][1] < gap_s:
            passes[-1][1:] = [t, c]
        else:
            passes.append([t, t, c])
    out = []
    for i, (_, t_last, c) in enumerate(passes):
        t_next = passes[i + 1][0] if i + 1 < len(passes) else t_last + 1.0 + 2 * jitter_s
        if t_next - t_last > 2 * jitter_s:
            out.append((t_last + jitter_s, t_next - jitter_s, c))
    return out


def order_slack_mib(phase: dict) -> float:
    """MiB of free, unreported blocks >= the order, in zones a pass visits, that the host did
    not hold right after the release. kpageflags gives no free-list order, so the model cannot
    know which pass meets them: each can take a report slot of a held block in an early pass
    (seen: a 6.12 plateau 12 MiB short of the predicted step, the total within). They move
    the curve's intermediate plateaus, not the total."""
    if "captures" not in phase:
        return 0.0
    cap = Capture.from_json(phase["captures"]["freed"])
    gated = {z.name for z in cap.scan.zones if z.gated(cap.order)}
    pages = sum(b.pages - cap.held_in(b.head, b.end) for b in cap.blocks
                if b.order >= cap.order and not b.reported and b.zone not in gated)
    return pages * 4096 / (1 << 20)


def curve_mismatches(result: dict, jitter_s: float = 0.5) -> list[str]:
    """Where the measured drop left the predicted curve on a plateau: beyond the interval's
    widths, or, for a plateau before the last, on the low side also beyond order_slack_mib
    plus the pcp_pages term.

    samples are [seconds after the free, QEMU RSS MiB, RAM mapping MiB]; the
    drop at t is peak - RSS(t), of the metric the prediction is for.
    """
    col, peak = (2, result["ram_rss_peak_mib"]) if result.get("metric") == "mapping" else (1, result["rss_peak_mib"])
    phase = (result.get("phases") or [result])[-1]
    # Pages on per-cpu lists at the snapshot reach the buddy lists at a time the model does
    # not know (6.12 decays pcp->high over time), so they may miss the early passes too.
    pcp = sum(t["hi_mib"] for t in result.get("terms", []) if t["name"] == "pcp_pages")
    slack = order_slack_mib(phase) + pcp
    lo = result["predicted_mib"] - result["predicted_lo_mib"]
    hi = result["predicted_hi_mib"] - result["predicted_mib"]
    bad = []
    windows = plateaus(result["predicted_curve"], jitter_s)
    for i, (t0, t1, c) in enumerate(windows):
        low = c - lo - (slack if i < len(windows) - 1 else 0.0)
        for sample in result["samples"]:
            t = sample[0]
            if t0 <= t <= t1:
                drop = peak - sample[col]
                if not low <= drop <= c + hi:
                    bad.append(f"at {t:.2f} s the drop was {drop:.1f} MiB, predicted {c:.1f} in [{low:.1f}, {c + hi:.1f}]")
    return bad
