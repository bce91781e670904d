"""hint-migrate's report on stored real results: a dead destination reads as one, with its console."""
import json
from pathlib import Path

from harness.hint_cli import human
from harness.verdict import hint_prediction

DATA = Path(__file__).parent.parent / "data" / "hint_migrate"


def test_dead_destination_is_a_verdict_with_the_console_tail():
    r = json.loads((DATA / "6.1-qemu7.2-hint-on-reporting-off-dead.json").read_text())
    out = human(r)
    assert "verdict: DEAD" in out and "BUG: TASK stack guard page was hit" in out
    assert "exc_page_fault" in r["dst_console_tail"]


def test_completed_run_prints_measured_against_predicted():
    r = json.loads((DATA / "6.1-qemu10.0-hint-on-reporting-on.json").read_text())
    r.update(hint_prediction.predict(r))
    out = human(r)
    assert "verdict: WITHIN" in out and "source RSS rise" in out and "destination release" in out
