"""The measured phase and the run's facts as typed records: a stored phase reads back into
them and writes the same JSON (the result's phase), and the model's slice of a phase is only
what was read before the release."""
import json
from pathlib import Path

import pytest

from harness.measure.phase import ModelInput, Phase, PhaseEnd, RunFacts
from harness.verdict import prediction

DATA = Path(__file__).resolve().parent.parent / "data" / "release"
STORED = sorted(p.stem for p in DATA.glob("*_o[nf]*.json") if not p.stem.endswith(".ftrace")
                and not p.stem.endswith(".trace"))
MEASURED = ("phase", "freed_mib", "rss_peak_mib", "rss_after_mib", "drop_mib", "ram_rss_peak_mib",
            "ram_rss_after_mib", "ram_drop_mib", "reportable_mib", "reportable_order", "seconds_to_90pct",
            "samples", "snapshots", "carries_unreported", "per_block", "first_capture_s", "release_s",
            "release_at_s", "captures", "guest_stats", "guest_stats_settled")


@pytest.mark.parametrize("name", STORED)
def test_a_stored_phase_round_trips(name):
    r = json.loads((DATA / f"{name}.json").read_text())
    for d in r["phases"]:
        ph = Phase.from_json(d)
        out = ph.to_json()
        assert {k: out[k] for k in MEASURED if k in d} == {k: d[k] for k in MEASURED if k in d}
        if "end" in d:                  # older runs ended on stable RSS and did not say so
            assert out["end"] == {k: v for k, v in d["end"].items() if v is not None}
        else:
            assert ph.end == PhaseEnd("stable")
        assert Phase.from_json(out) == ph
        assert ph.pre.capture is d["pre"]["capture"]   # read once, not copied (the model-run cache's key)


def test_the_models_slice_of_a_phase_is_read_before_the_release():
    r = json.loads((DATA / "touch_free_settled_6.1_on.json").read_text())
    ph = Phase.from_json(r["phases"][-1])
    mi = ph.model_input
    assert isinstance(mi, ModelInput) and mi.held is ph.snapshots["held"]
    assert all(v <= 0 for v in mi.pre.read_at_s.values())
    # one capture right after the release and the scans that ended the phase
    assert mi.captures_after == 1 + ph.end.scans and ph.end.how == "scan"
    assert ModelInput(mi.pre, mi.held, mi.reportable_order, PhaseEnd("stable")).captures_after == 2
    # the same judgement from the typed records as from the JSON
    facts = RunFacts.of(r)
    assert facts.kernel == r["kernel"] and facts.idle_noise_mib == r["idle_noise_mib"]
    assert prediction.predict_release_phase(ph, facts)["verdict"] == \
        prediction.predict_release_phase(r["phases"][-1], r)["verdict"] == "within"


def test_a_phase_without_its_pre_record_is_refused():
    r = json.loads((DATA / "touch_free_settled_6.1_on.json").read_text())
    d = {k: v for k, v in r["phases"][-1].items() if k != "pre"}
    with pytest.raises(prediction.ModelError, match="no `pre` record"):
        prediction.predict_release_phase(d, r)
