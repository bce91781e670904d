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


def test_the_fault_nodes_and_the_cpus_node_come_from_e2emems_reply():
    from harness.measure.prerelease import fault_nodes_field
    assert fault_nodes_field("ok ms=3 faults=12 fnodes=0,1 node=0 pcp_us=90 pcp=0.DMA:0/0/1") == ((0, 1), 0)
    assert fault_nodes_field("ok ms=3 faults=6 node=1 pcp_us=90") == ((), 1)
    assert fault_nodes_field("ok ms=3 faults=6") == ((), None)
    d = json.loads((Path(__file__).parent.parent / "data" / "release" / "numa2_faults_6.1_on.json").read_text())
    pre = d["phases"][-1]["pre"]
    assert PreRecord.from_json(pre).to_json() == pre and pre["fault_nodes"] == [0, 1] and pre["cpu_node"] == 0


def test_our_cpus_node_round_trips_and_older_records_have_none():
    d = json.loads((Path(__file__).parent.parent / "data" / "release" / "numa2_tables_6.1_on.json").read_text())
    pre = d["phases"][-1]["pre"]
    assert PreRecord.from_json(pre).to_json() == pre and pre["ours_node"] == 1
    old = dict(pre)
    old.pop("ours_node")
    assert PreRecord.from_json(old).ours_node is None and "ours_node" not in PreRecord.from_json(old).to_json()
