"""ci/nightly's pieces on a real night's JUnit XML (tests/data/nightly/): rows, the summary,
the merge of shards, the shard plan, the night's own red/green check."""
import json
from pathlib import Path

from harness.report import nightly
from harness.report.nightly import Row, plan, problems, rows_from_junit, summary_markdown

DATA = Path(__file__).parents[1] / "data" / "nightly"


def test_rows_from_the_junit_xml():
    rows = rows_from_junit((DATA / "night-1" / "junit.xml").read_text())
    assert len(rows) == 6  # 5 tests, one with two phases, one with none
    by = {r.key: r for r in rows}
    on = by["tests.e2e.test_touch_free::test_reporting_on_gives_back_what_the_model_predicts[tcg] :: free"]
    assert (on.kernel, on.qemu, on.accel, on.backend, on.reporting, on.scenario) == \
        ("6.1.0-57-amd64", "7.2.22", "tcg", "anon", True, "touch-free")
    assert on.drop_error_mib == on.drop_mib - on.predicted_mib and on.outcome == "passed"
    nophase = by["tests.e2e.test_backends::test_system_qemu_is_72[tcg]"]
    assert nophase.phase is None and nophase.drop_mib is None


def test_outcomes_and_unreadable_properties():
    xml = """<testsuites><testsuite>
      <testcase classname="m" name="a[tcg]" time="1.5"><failure message="assert 1 == 2">tb</failure>
        <properties><property name="accel" value="tcg"/><property name="cell" value="6.12x10.0"/>
        <property name="phase:free" value="{not json"/></properties></testcase>
      <testcase classname="m" name="b[kvm]" time="0"><skipped message="needs KVM: the CPU shows no vmx/svm"/></testcase>
      <testcase classname="m" name="c" time="2"><error message="fixture broke"/></testcase>
    </testsuite></testsuites>"""
    a, b, c = rows_from_junit(xml)
    assert (a.outcome, a.message, a.cell, a.accel, a.phase) == ("failed", "assert 1 == 2", "6.12x10.0", "tcg", None)
    assert (b.outcome, b.message) == ("skipped", "needs KVM: the CPU shows no vmx/svm")
    assert c.outcome == "error"
    assert problems([a, b, c]) == ["m::a[tcg]: failed", "m::c: error"]


def test_summary_lists_failures_and_every_phase():
    rows = rows_from_junit((DATA / "night-1" / "junit.xml").read_text())
    md = summary_markdown({"name": "n", "wall_s": 171.0}, rows)
    assert "5 tests: 5 passed, 0 failed" in md and "## Failures" not in md
    assert md.count("| within |") == 5
    bad = rows + [Row(test="m::x", phase=None, outcome="failed", duration_s=1, message="boom")]
    assert "## Failures" in summary_markdown({}, bad) and "boom" in summary_markdown({}, bad)


def test_the_plan_shards_each_cell_by_its_stored_durations():
    durations = {"a": 600.0, "b": 600.0, "c": 100.0}
    cells = {"a": "6.1x7.2", "b": "6.1x7.2", "c": "6.12x10.0", "new": "6.12x10.0"}
    p = plan(durations, cells, shard_budget_s=700)
    assert [(s["cell"], s["group"], s["splits"]) for s in p] == [("6.12x10.0", 1, 1), ("6.1x7.2", 1, 2), ("6.1x7.2", 2, 2)]
    # a test without a stored duration counts as the mean (433 s): 533 s in one shard
    assert p[0]["estimated_s"] == 533


def test_merge_meta():
    m = nightly.merge_meta([
        {"name": "n", "started": "2026-12-01T02:00:00Z", "wall_s": 10, "cells": ["6.1x7.2"], "shards": [{"group": 1}]},
        {"name": "n", "started": "2026-12-01T01:59:00Z", "wall_s": 30, "cells": ["6.12x10.0"], "shards": [{"group": 2}]}])
    assert (m["name"], m["started"], m["wall_s"], m["cells"]) == ("n", "2026-12-01T01:59:00Z", 30, ["6.12x10.0", "6.1x7.2"])
    assert len(m["shards"]) == 2


def test_a_night_without_problems_passes_the_check():
    assert problems(nightly.read_rows(DATA / "night-1" / "results.jsonl")) == []
    assert json.loads((DATA / "night-1" / "run.json").read_text())["name"] == "night-1"


def test_two_shards_give_the_same_set_as_one_run():
    """night-2: one run; night-3: the same selection as two pytest-split shards, merged by
    ci/merge (both recorded here, real guests)."""
    one = nightly.read_rows(DATA / "night-2" / "results.jsonl")
    shards = [nightly.read_rows(DATA / "night-3" / f"shard-{g}" / "results.jsonl") for g in (1, 2)]
    merged = nightly.read_rows(DATA / "night-3" / "merged" / "results.jsonl")
    tests = [{r.test for r in s} for s in shards]
    assert tests[0] and tests[1] and not tests[0] & tests[1]  # each test in exactly one shard
    assert {r.key for r in merged} == {r.key for r in one} == {r.key for s in shards for r in s}
    assert {(r.key, r.outcome, r.cell, r.accel, r.kernel, r.qemu) for r in merged} == \
        {(r.key, r.outcome, r.cell, r.accel, r.kernel, r.qemu) for r in one}
    from_junit = rows_from_junit((DATA / "night-3" / "merged" / "junit.xml").read_text())
    assert sorted(from_junit, key=lambda r: r.test) == merged


def test_merge_reproduces_the_merged_night(tmp_path):
    shards = [DATA / "night-3" / f"shard-{g}" for g in (1, 2)]
    rows = nightly.finish(tmp_path, shards)
    assert rows == nightly.read_rows(DATA / "night-3" / "merged" / "results.jsonl")
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["name"] == "night-3" and [s["group"] for s in meta["shards"]] == [1, 2]
