"""Measured -> predicted: run the model on a result's own snapshots and judge the measurement.

Pure: a result dict (as the scenario returns it, or as saved in results/*.json)
in, prediction fields out. `balloon-e2e predict` replays saved results through
it with other kernel constants (what-ifs).
"""
from __future__ import annotations

from .model import ReportingParams, predict_touch_free, verdict
from .snapshot import snapshot_from_capture

# Measured RSS noise of the QEMU process (README "Measured here"): an idle
# guest's RSS moved by 0-2.3 MiB over 5 s in 12 runs; a drop is the difference
# of two samples, so it carries up to twice 2.5 MiB.
NOISE_MIB = 5.0


def predict(result: dict, params: ReportingParams | None = None) -> dict:
    held, freed = result["snapshots"]["held"], result["snapshots"]["freed"]
    before, after = snapshot_from_capture(held), snapshot_from_capture(freed)
    order = result["reportable_order"]
    p = predict_touch_free(
        before, after, kernel=result["kernel"], order=order, freed_mib=result["freed_mib"],
        noise_mib=NOISE_MIB, backend=result.get("backend", "anon"), params=params or ReportingParams(),
        # With reporting off no report reaches QEMU: for the host that is the
        # same as a QEMU that discards nothing.
        discard_inhibited=not result["reporting_negotiated"])
    j = p.to_json()
    return {
        "predicted_mib": j["expected_mib"],
        "predicted_lo_mib": j["lo_mib"],
        "predicted_hi_mib": j["hi_mib"],
        "predicted_seconds_to_90pct": j["seconds_to_90pct"],
        "terms": j["terms"],
        "predicted_curve": j["curve"],
        "model": {k: j[k] for k in ("per_zone", "per_order", "passes", "why")},
        "verdict": verdict(result["drop_mib"], p),
    }
