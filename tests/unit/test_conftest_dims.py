"""conftest.py's dimensions: a test's cell label must match the guest it boots, tests marked
`kvm` skip with the reason where KVM cannot run, the accelerator ends each guest test's id."""
import subprocess
import sys

import pytest

from harness.vm import accel
from harness.errors import UserError
from harness.paths import REPO

CASES = REPO / "tests" / "unit" / "cases" / "case_dims.py"


def _kvm_here() -> bool:
    try:
        accel.choose("kvm", accel.cpu_flags(open("/proc/cpuinfo").read()), accel.kvm_opens())
        return True
    except UserError:
        return False


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-rs", "-q",
                           "--rootdir", str(REPO), "-c", str(REPO / "pyproject.toml"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_guest_of_another_cell_than_the_test_says_fails_before_booting():
    r = _run(f"{CASES}::test_books_another_cell_than_its_parameters")
    assert r.returncode == 1, r.stdout[-2000:]
    assert "this test boots 6.12x7.2 but its parameters put it in 6.1x7.2" in r.stdout
    assert "a guest was booted" not in r.stdout


@pytest.mark.skipif(_kvm_here(), reason="KVM works here: the kvm-marked case would run")
def test_kvm_tests_skip_with_the_reason_where_kvm_cannot_run():
    r = _run(f"{CASES}::test_needs_kvm", "--collect-only")
    assert "test_needs_kvm[kvm]" in r.stdout  # its id names its accelerator
    r = _run(f"{CASES}::test_needs_kvm")
    assert r.returncode == 0 and "1 skipped" in r.stdout, r.stdout[-2000:]
    assert "needs KVM: accel kvm:" in r.stdout
