"""Every way a command can end maps to the exit code that says what happened, with a message
that names the failure (harness/errors.py classify). A failure is never 1: 1 is a verdict."""
import subprocess

import paramiko
import pytest

from harness.errors import GuestError, HostError, Interrupted, LaunchError, UserError, WorkloadError, classify
from harness.model.errors import ModelError
from harness.measure.procfs import ProcParseError


@pytest.mark.parametrize("exc,code,words", [
    (UserError("--mib lots: not a size\nsecond line"), 2, ["error: --mib lots: not a size"]),
    (WorkloadError("workload 'false' failed (status 1) before its release"), 2, ["workload 'false'", "status 1"]),
    (KeyboardInterrupt(), 130, ["interrupted"]),
    (Interrupted("SIGTERM"), 130, ["interrupted", "SIGTERM"]),
    (LaunchError("QEMU exited before the console showed 'e2e: rcS done'", ["qemu"], 1, "", "Kernel panic"),
     3, ["QEMU exited", "Kernel panic", "argv: qemu"]),
    (GuestError("sampling QEMU 7 failed (QEMU gone?)"), 3, ["sampling QEMU 7"]),
    (RuntimeError("sampling QEMU 7 failed"), 3, ["RuntimeError", "sampling QEMU 7"]),
    (OSError(5, "Input/output error", "/proc/7/pagemap"), 3, ["OSError", "/proc/7/pagemap"]),
    (FileNotFoundError(2, "No such file", "/proc/7/smaps"), 3, ["FileNotFoundError", "/proc/7/smaps"]),
    (ProcParseError("zoneinfo: no 'Node' line"), 3, ["ProcParseError", "zoneinfo"]),
    (ValueError("no keep= in workload reply 'err'"), 3, ["ValueError", "no keep="]),
    (ModelError("cannot read a kernel version"), 3, ["ModelError"]),
    (paramiko.SSHException("SSH session not active"), 3, ["SSHException", "not active"]),
    (EOFError(), 3, ["EOFError"]),
    (TimeoutError("timed out after 120 s waiting for RSS to settle"), 3, ["TimeoutError", "RSS to settle"]),
    (subprocess.TimeoutExpired(["apt-get", "update"], 30), 3, ["timed out after 30 s", "apt-get update"]),
    (subprocess.CalledProcessError(1, ["dpkg-deb", "-x"], stderr=b"dpkg-deb: not a debian archive"), 3,
     ["exited 1", "dpkg-deb -x", "not a debian archive"]),
    (HostError("hugetlb pages not given back"), 3, ["HostError", "hugetlb"]),
    (TypeError("unsupported operand"), 3, ["unexpected TypeError", "a bug"]),
])
def test_each_failure_class_has_its_code_and_says_what_failed(exc, code, words):
    got, msg = classify(exc)
    assert got == code, msg
    for w in words:
        assert w in msg, msg
    if code == 2:
        assert len(msg.splitlines()) == 1
