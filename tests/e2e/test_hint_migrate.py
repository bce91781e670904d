"""Free page hinting through a live migration to a second QEMU (harness/scenarios/hint_migrate.py).

Each case: a 1 GiB guest writes a non-zero pattern over 256 MiB and frees it, keeps 64 MiB of
checksummed data, and is migrated over a unix socket. Passing means: the destination guest is
alive with a clean console, every kept page verifies there, the pages migrated as normal and as
zero, the memory the guest held while hinting and the source's RSS rise all lie in the model's
intervals (harness/model/hinting.py, terms named in the result), and with reporting on the
destination reports a release as the touch-free model predicts. The hinting-off case is the
control: the same checks with the off model (no blocks held, no rise, every non-zero page sent).

The default run has one case (6.1 x QEMU 10.0, hinting on); the rest run with --matrix full.
QEMU 7.2 with hinting on: the destination guest died after the switch-over in every run here
(MEASURED.md "Free page hinting through live migration"); those cells assert the same as the
others and are strict xfails: they fail as long as 7.2 kills the guest, and the suite fails
the day they pass, so the note gets revisited.
"""
import json

import pytest

from harness.paths import REPO
from harness.scenarios import hint_migrate
from tests.e2e.explain import explain

SAVED = REPO / "results" / "hint_migrate"  # every case's result JSON, for MEASURED.md's table

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

QEMU72_KILLS = pytest.mark.xfail(strict=True, raises=AssertionError,
                                 reason="QEMU 7.2 + free-page-hint: the destination guest dies after the switch-over")
CELLS = [
    pytest.param(dict(kernel="6.1", qemu="10.0", hinting=True), id="kernel6.1-qemu10.0-hint-on"),
    pytest.param(dict(kernel="6.1", qemu="10.0", hinting=False), id="kernel6.1-qemu10.0-hint-off", marks=pytest.mark.matrix),
    pytest.param(dict(kernel="6.1", qemu="7.2", hinting=False), id="kernel6.1-qemu7.2-hint-off", marks=pytest.mark.matrix),
    pytest.param(dict(kernel="6.1", qemu="7.2", hinting=True), id="kernel6.1-qemu7.2-hint-on", marks=[pytest.mark.matrix, QEMU72_KILLS]),
    pytest.param(dict(kernel="6.12", qemu="10.0", hinting=True), id="kernel6.12-qemu10.0-hint-on", marks=pytest.mark.matrix),
    pytest.param(dict(kernel="6.12", qemu="10.0", hinting=False), id="kernel6.12-qemu10.0-hint-off", marks=pytest.mark.matrix),
    pytest.param(dict(kernel="6.12", qemu="7.2", hinting=False), id="kernel6.12-qemu7.2-hint-off", marks=pytest.mark.matrix),
    pytest.param(dict(kernel="6.12", qemu="7.2", hinting=True), id="kernel6.12-qemu7.2-hint-on", marks=[pytest.mark.matrix, QEMU72_KILLS]),
]


# One `dims` parameter (kernel, qemu, hinting): the shape the suite's cell selection reads.
@pytest.mark.parametrize("dims", CELLS)
def test_hinted_migration_is_predicted_and_loses_nothing(guest_factory, dims):
    kernel, qemu, hinting = dims["kernel"], dims["qemu"], dims["hinting"]
    g = guest_factory(memory_mib=1024, kernel=kernel, qemu=qemu, hinting=hinting, start="boot")  # measured and modelled on booted guests
    assert g.qemu.version.startswith(qemu + "."), g.qemu.version
    r = hint_migrate.run(g, mib=256)
    SAVED.mkdir(parents=True, exist_ok=True)
    (SAVED / f"{kernel}-qemu{qemu}-hint-{'on' if hinting else 'off'}.json").write_text(json.dumps(r, indent=1))
    assert r["verdict"] != "dead", r.get("error")
    assert r["migration_status"] == "completed", r.get("error")
    assert r["hinting_negotiated"] is hinting
    assert r["mismatched_pages"] == 0 and r["verified_pages"] == 64 * 256
    assert r["checks"] == {k: "within" for k in r["checks"]}, (r["checks"], r["measured"], {
        k: (v["expected"], v["lo"], v["hi"]) for k, v in r["prediction"].items() if isinstance(v, dict)})
    if r["reporting"]:
        d = r["destination_release"]
        assert d["reporting_negotiated"], "VIRTIO_BALLOON_F_REPORTING not negotiated on the destination"
        assert d["verdict"] == "within", explain(d.get("result", d))
        # Not asserted on the destination: the per-block invariants. The destination QEMU reads
        # every zero page it receives (7.2 and 10.0), which maps the shared zero page there, and
        # pagemap calls that present; blocks the source had reported arrive with PG_reported set,
        # so they read as "reported and held" while holding no memory (RSS 188-204 MiB for 1 GiB).
        # Measured: 414-423 such blocks in every hinting-off run, QEMU 7.2 and 10.0 alike (MEASURED.md);
        # the hinted blocks are freed and reported afresh on the destination, so 0 there. perblock needs to tell
        # the zero page's PFN apart before the invariant means anything on a migrated guest.
    assert r["verdict"] == "within"
