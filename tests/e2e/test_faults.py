"""Faults: whatever happens to the runner, the guest or QEMU, nothing is left behind.

Each test checks by PID (the QEMU process is gone) and by path (the run
directory with its console log and QEMU log is gone, now or at the next sweep).
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.errors import GuestError
from harness.paths import REPO
from harness.scenarios import touch_free
from harness.vm.guest import sweep_stale_rundirs
from tests.e2e.reaping import gone

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# A child process that launches a guest, says which QEMU and run directory it
# has, then waits to be killed.
CHILD = """
import sys, time
from harness.vm.guest import Guest
from harness.config import GuestConfig
g = Guest.provisioned(GuestConfig(memory_mib=512, smp=1))
g.launch()
print(g.pid, g.rundir, flush=True)
time.sleep(600)
"""


def _launch_child():
    p = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line:
        p.kill()
        pytest.fail("child did not launch a guest")
    pid, rundir = line.split()
    return p, int(pid), Path(rundir)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_launcher_takes_qemu_with_it(sig):
    child, qemu, rundir = _launch_child()
    assert psutil.pid_exists(qemu) and rundir.exists()
    child.send_signal(sig)
    child.wait(timeout=30)
    assert gone(qemu), f"QEMU {qemu} outlived its launcher ({sig.name})"
    # SIGKILL leaves no chance to clean up: the next guest's sweep removes the directory.
    sweep_stale_rundirs()
    assert not rundir.exists(), f"{rundir} left behind"


# The CLI interrupted mid-release: tests/e2e/test_cli_runs.py (exit 130, QEMU quit, folder kept).


def test_qemu_killed_mid_scenario_is_a_clear_error(guest_factory):
    g = guest_factory(memory_mib=1024)
    os.kill(g.pid, signal.SIGKILL)
    with pytest.raises((GuestError, RuntimeError, OSError, EOFError)):
        touch_free.run(g, mib=256)
    # the scenario can fail before the kernel has torn the killed QEMU down (a restored
    # guest's SSH resets at once): wait for its exit, then shutdown must see it
    g.proc.wait(timeout=30)
    assert g.shutdown().startswith("had exited")
    assert not g.alive()


def test_guest_panic_fails_with_the_console_tail(guest_factory):
    g = guest_factory(memory_mib=1024)
    g.ssh.start("echo c > /proc/sysrq-trigger")  # the guest dies; no answer comes
    deadline = time.monotonic() + 60
    while g.alive() and time.monotonic() < deadline:  # panic=-1 + -no-reboot: QEMU exits
        time.sleep(0.1)
    with pytest.raises(GuestError) as e:
        g.check_healthy()
    assert "Kernel panic" in str(e.value) and "sysrq" in str(e.value).lower()
