"""Run only by tests/e2e/test_runner_faults.py, in a child pytest: each case boots a guest,
writes its QEMU pid and run directory to $FAULT_REPORT, then meets its fault."""
import os
import signal
import time

import pytest


def _report(g):
    with open(os.environ["FAULT_REPORT"], "w") as f:
        f.write(f"{g.pid} {g.rundir}\n")


# The timeout counts the guest's start too: a restore (test_runner_faults.py builds the saved
# guest first), measured 0.5-1.5 s next to another guest, plus the image lookup (~1.7 s). A
# boot took 8.8-16.5 s there: were the saved guest missing, the case would fail, not pass.
@pytest.mark.timeout(15)
def test_times_out(guest_factory):
    g = guest_factory(memory_mib=512, smp=1)
    _report(g)
    time.sleep(60)  # pytest-timeout (signal method) interrupts this


def test_worker_crashes(guest_factory):
    g = guest_factory(memory_mib=512, smp=1)
    _report(g)
    os._exit(1)  # the xdist worker dies at once: no finally, no teardown


def test_runner_gets_sigterm(guest_factory):
    g = guest_factory(memory_mib=512, smp=1)
    _report(g)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)


def test_ssh_drops(guest_factory):
    from harness.errors import GuestError
    g = guest_factory(memory_mib=512, smp=1)
    _report(g)
    g.ssh.client.get_transport().close()  # the connection drops under the test
    with pytest.raises(GuestError):
        g.run("true")
    pytest.fail("deliberate failure after a dropped SSH connection: teardown must still reap")
