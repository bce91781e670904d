"""The timings of a result: report times from samples, the floor, what a fresh verdict adds."""
import json
from pathlib import Path

from harness.verdict import prediction

from harness.report import timings

DATA = Path(__file__).parents[1] / "data" / "release"


def test_report_times_are_the_first_step_and_the_final_level():
    samples = [[0.1, 1200, 0], [1.0, 1199, 0], [2.1, 950, 0], [4.1, 700, 0], [6.1, 203, 0], [7.0, 201, 0]]
    assert timings.report_times(samples, 1200, 200) == (2.1, 6.1)


def test_nothing_dropped_means_no_report_times():
    assert timings.report_times([[0.1, 300, 0], [1.0, 297, 0]], 300, 297) == (None, None)


def test_the_floor_is_restore_plus_workload_plus_the_last_pass():
    assert timings.floor_s(0.6, 3.5, 8.04) == 0.6 + 3.5 + 8.04


def test_a_judged_result_gets_its_timings():
    r = json.loads((DATA / "restored_early_worker_6.1_on.json").read_text())
    r["timings"] = {"start": "restore", "start_s": 0.6, "workload_s": 9.2}
    prediction.predict(r)
    t = r["timings"]
    assert t["last_report_s"] == 7.34 and t["first_report_s"] == 1.4
    assert t["floor_s"] == round(0.6 + 9.2 + 8.04, 2)
    assert t["model_s"] > 0 and "verdict_s" not in t  # no QEMU start recorded: not a fresh run
