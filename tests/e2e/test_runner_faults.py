"""The test runner itself meets a fault (timeout, crashed xdist worker, SIGTERM, dropped
SSH): its guests are reaped anyway, by PID, and their run directories do not stay."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import REPO
from harness.vm.guest import sweep_stale_rundirs
from tests.e2e.reaping import gone

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
CASES = Path(__file__).parent / "fault_cases" / "case_runner_faults.py"


# torn_down: the runner survives the fault, so the fixture's teardown must have
# removed the run directory itself; otherwise only the next sweep can.
@pytest.mark.parametrize("case,xdist,torn_down", [
    ("test_times_out", False, True), ("test_worker_crashes", True, False),
    ("test_runner_gets_sigterm", False, False), ("test_ssh_drops", False, True)],
    ids=["timeout", "worker-crash", "sigterm", "ssh-drop"])
def test_guest_is_reaped(tmp_path, guest_factory, case, xdist, torn_down):
    # The child's guest (the same configuration) then restores instead of building the saved
    # guest, so the timeout case's limit counts a restore, not a boot and the boot-time passes.
    guest_factory(memory_mib=512, smp=1).shutdown()
    report = tmp_path / "report"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"{CASES}::{case}",
           "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml")] + (["-n", "1"] if xdist else [])
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "FAULT_REPORT": str(report)})
    assert r.returncode != 0, "the case must fail: " + r.stdout[-2000:]
    pid, rundir = report.read_text().split()
    assert gone(int(pid)), f"QEMU {pid} survived the {case} fault"
    if torn_down:
        assert not Path(rundir).exists(), f"teardown left {rundir} behind"
    sweep_stale_rundirs()  # what the next guest does
    assert not Path(rundir).exists(), f"{rundir} left behind"
