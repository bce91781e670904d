"""The default scenario across guest kernel x QEMU (conftest.py: --matrix default|full).

Each pair: drop within the model's interval, the measured curve on the predicted
per-pass plateaus, per-block invariants hold, reporting negotiated.
"""
import pytest

from harness.measure.phase import main_phase
from harness.scenarios import touch_free
from harness.verdict.prediction import curve_mismatches, predict
from tests.e2e.explain import explain

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_touch_free_within_the_model(guest_factory, kernel_qemu, report):
    kernel, qemu = kernel_qemu
    _check(guest_factory(kernel=kernel, qemu=qemu), qemu, report)


@pytest.mark.kvm
def test_touch_free_within_the_model_under_kvm(guest_factory, report):
    """The same figures where KVM is real (a nightly runner with /dev/kvm): the model's pacing
    is the kernel's, not the accelerator's. Skips on TCG-only hosts with the reason."""
    g = guest_factory()
    assert g.cfg.accel == "kvm", g.cfg.accel
    _check(g, "7.2", report)


def _check(g, qemu, report):
    assert g.qemu.version.startswith(qemu + "."), g.qemu.version
    r = touch_free.run(g, mib=1024)
    predict(r)
    m = main_phase(r)
    report(r)
    assert r["reporting_negotiated"]
    assert r["verdict"] == "within", explain(r)
    assert curve_mismatches(m) == []
    assert m["per_block"]["violations"]["count"] == 0, m["per_block"]["violations"]["first"]
