"""The test runner itself meets a fault (timeout, crashed xdist worker, SIGTERM, dropped
SSH): its guests are reaped anyway, by PID, and their run directories do not stay."""
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.guest import sweep_stale_rundirs
from harness.paths import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
CASES = Path(__file__).parent / "fault_cases" / "case_runner_faults.py"


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


# torn_down: the runner survives the fault, so the fixture's teardown must have
# removed the run directory itself; otherwise only the next sweep can.
@pytest.mark.parametrize("case,xdist,torn_down", [
    ("test_times_out", False, True), ("test_worker_crashes", True, False),
    ("test_runner_gets_sigterm", False, False), ("test_ssh_drops", False, True)],
    ids=["timeout", "worker-crash", "sigterm", "ssh-drop"])
def test_guest_is_reaped(tmp_path, case, xdist, torn_down):
    report = tmp_path / "report"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"{CASES}::{case}",
           "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml")] + (["-n", "1"] if xdist else [])
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "FAULT_REPORT": str(report)})
    assert r.returncode != 0, "the case must fail: " + r.stdout[-2000:]
    pid, rundir = report.read_text().split()
    assert _gone(int(pid)), f"QEMU {pid} survived the {case} fault"
    if torn_down:
        assert not Path(rundir).exists(), f"teardown left {rundir} behind"
    sweep_stale_rundirs()  # what the next guest does
    assert not Path(rundir).exists(), f"{rundir} left behind"
