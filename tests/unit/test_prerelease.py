"""The before-the-release record: its JSON form round-trips, and results written before a field
existed read with that field's default."""
import json
from pathlib import Path

from harness.measure.prerelease import PreRecord

DATA = Path(__file__).resolve().parent.parent / "data" / "release"


def test_a_stored_record_round_trips():
    for f in ("touch_free_settled_6.1_on", "touch_free_6.1_on", "fragment_6.1_on"):
        for ph in json.loads((DATA / f"{f}.json").read_text())["phases"]:
            rec = PreRecord.from_json(ph["pre"])
            assert PreRecord.from_json(rec.to_json()) == rec
            assert rec.mapped and all(isinstance(r[2], bool) for r in rec.mapped)
            assert all(v <= 0 for v in rec.read_at_s.values())


def test_fields_added_later_take_what_earlier_runs_did():
    old = json.loads((DATA / "touch_free_6.1_on.json").read_text())["phases"][-1]["pre"]
    assert "faults_after" not in old and "ours_cpu" not in old
    rec = PreRecord.from_json(old)
    assert rec.faults_after == 0 and rec.ours_cpu is None and rec.kept == ()
    new = PreRecord.from_json(json.loads((DATA / "touch_free_settled_6.1_on.json").read_text())["phases"][-1]["pre"])
    assert (new.faults_after, new.ours_cpu, new.cpu) == (4, 1, 0)
