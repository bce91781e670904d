"""ci/github/nightly.yml: valid against GitHub's workflow schema (vendored by check-jsonschema,
no network), and shaped as the nightly needs: scheduled, planned, sharded without fail-fast,
KVM on the runner, debian:12, timeouts, one artifact per shard, an aggregate that always runs."""
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from harness.paths import REPO

WORKFLOW = REPO / "ci" / "github" / "nightly.yml"


def schema_errors(path: Path) -> str | None:
    cli = Path(sys.executable).parent / "check-jsonschema"
    r = subprocess.run([str(cli), "--builtin-schema", "vendor.github-workflows", str(path)], capture_output=True,
                       text=True, timeout=60)
    return None if r.returncode == 0 else r.stdout + r.stderr


def test_workflow_is_valid_against_githubs_schema():
    assert schema_errors(WORKFLOW) is None


def test_the_schema_check_fails_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest", 1))
    assert "jobs.plan" in (schema_errors(broken) or "")


@pytest.fixture(scope="module")
def wf():
    return YAML(typ="safe").load(WORKFLOW.read_text())


def test_scheduled_and_planned(wf):
    assert wf["on"]["schedule"][0]["cron"]
    assert "matrix" in wf["jobs"]["plan"]["outputs"]
    assert "ci/nightly plan" in " ".join(s.get("run", "") for s in wf["jobs"]["plan"]["steps"])


def test_shards_run_every_cell_with_kvm_in_debian_12(wf):
    shard = wf["jobs"]["shard"]
    assert shard["strategy"]["fail-fast"] is False
    assert shard["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    runs = " ".join(s.get("run", "") for s in shard["steps"])
    assert "99-kvm4all.rules" in runs and "udevadm trigger --name-match=kvm" in runs
    assert "--device /dev/kvm" in runs and "debian:12" in runs
    for flag in ("--cells", "--splits", "--group", "--name"):
        assert flag in runs
    upload = [s for s in shard["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert len(upload) == 1 and upload[0]["if"] == "always()"
    # artifacts v4 are immutable: one name per shard
    assert "${{ matrix.cell }}" in upload[0]["with"]["name"] and "${{ matrix.group }}" in upload[0]["with"]["name"]


def test_every_job_has_a_timeout(wf):
    assert all(isinstance(j.get("timeout-minutes"), int) for j in wf["jobs"].values())


def test_aggregate_merges_stores_compares_and_fails_on_a_regression(wf):
    agg = wf["jobs"]["aggregate"]
    assert "always()" in agg["if"] and set(agg["needs"]) == {"plan", "shard"}
    run = " ".join(s.get("run", "") for s in agg["steps"])
    for step in ("ci/merge", "history ingest", "compare previous", "history page", "GITHUB_STEP_SUMMARY",
                 "harness.report.nightly check", "exit $rc"):
        assert step in run, step
    assert any(s.get("if") == "needs.shard.result != 'success'" and "exit 1" in s["run"] for s in agg["steps"])
    dl = [s for s in agg["steps"] if s.get("uses", "").startswith("actions/download-artifact")]
    assert dl and dl[0]["with"]["pattern"] == "shard-*"
