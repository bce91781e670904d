"""Fixtures: guests owned by a factory that always reaps them; logs kept only on failure."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from harness.vm import accel as accel_mod
from harness.cells import Cell, cell_of, parse_cells
from harness.config import GuestConfig
from harness.errors import UserError
from harness.vm.guest import Guest
from harness.paths import REPO

# ci/nightly points this into its output folder so a night's failure artifacts travel with it.
ARTIFACTS = Path(os.environ.get("BALLOON_E2E_ARTIFACTS") or REPO / "results" / "artifacts")

# Guest kernel x QEMU, the matrix dimensions. The default run covers 6.1 x 7.2
# (tests/e2e/test_touch_free.py and the rest) and the newest pair here;
# --matrix full runs every pair.
KERNELS = ("6.1", "6.12")
QEMUS = ("7.2", "10.0")
DEFAULT_PAIRS = (("6.12", "10.0"),)


def pytest_addoption(parser):
    parser.addoption("--matrix", choices=("default", "full"), default="default",
                     help="default: a subset (6.12 x 10.0 for kernel x QEMU tests, no `matrix` tests); "
                          "full: every kernel x QEMU pair and every `matrix` test")
    parser.addoption("--cells", default=None, metavar="6.1x7.2,6.12x10.0",
                     help="run only the tests of these guest kernel x QEMU cells (a test with no such "
                          "dimension is in 6.1x7.2); a nightly shard fetches only its cells' images and QEMU")
    parser.addoption("--accel", default="auto", choices=("auto", "kvm", "tcg"),
                     help="accelerator of every guest (auto: KVM only where the CPU shows vmx/svm and "
                          "/dev/kvm opens); tests marked `kvm` always use KVM and skip where it cannot run")


def pytest_configure(config):
    # The session's accelerator, and why KVM cannot run here (None where it can): probed once.
    with open("/proc/cpuinfo") as f:
        flags = accel_mod.cpu_flags(f.read())
    opens = accel_mod.kvm_opens()
    try:
        accel_mod.choose("kvm", flags, opens)
        config.balloon_no_kvm = None
    except UserError as e:
        config.balloon_no_kvm = str(e)
    requested = config.getoption("accel")
    if requested == "kvm" and config.balloon_no_kvm:
        raise pytest.UsageError(f"--accel kvm: {config.balloon_no_kvm}")
    config.balloon_accel = accel_mod.choose(requested, flags, opens)
    try:
        config.balloon_cells = parse_cells(config.getoption("cells"))
    except UserError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_collection_modifyitems(config, items):
    # The default run is a sensible subset; `matrix` tests join with --matrix full.
    keep, dropped = [], []
    for item in items:
        matrix_out = item.get_closest_marker("matrix") and config.getoption("matrix") != "full"
        cell_out = config.balloon_cells is not None and _item_cell(item) not in config.balloon_cells
        (dropped if matrix_out or cell_out else keep).append(item)
        if item.get_closest_marker("kvm") and config.balloon_no_kvm:
            item.add_marker(pytest.mark.skip(reason=f"needs KVM: {config.balloon_no_kvm}"))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _item_cell(item) -> Cell:
    callspec = getattr(item, "callspec", None)
    return cell_of(callspec.params if callspec else {})


@pytest.hookimpl(trylast=True)  # after the @parametrize marks, so the accelerator ends each id
def pytest_generate_tests(metafunc):
    if "kernel_qemu" in metafunc.fixturenames:
        full = metafunc.config.getoption("matrix") == "full"
        pairs = [(k, q) for k in KERNELS for q in QEMUS] if full else list(DEFAULT_PAIRS)
        metafunc.parametrize("kernel_qemu", pairs, ids=[f"kernel{k}-qemu{q}" for k, q in pairs])
    # The accelerator is in the id of every test that boots a guest: TCG and KVM figures differ.
    if metafunc.definition.get_closest_marker("e2e") or "guest_factory" in metafunc.fixturenames:
        a = "kvm" if metafunc.definition.get_closest_marker("kvm") else metafunc.config.balloon_accel
        metafunc.parametrize("guest_accel", [a], ids=[a], indirect=True)


@pytest.fixture(autouse=True)
def guest_accel(request):
    """The accelerator of this test's guests (None for tests that boot none); recorded in the JUnit XML."""
    a = getattr(request, "param", None)
    if a is not None:  # the nightly's results read both from the JUnit XML (harness/report/nightly.py)
        request.node.user_properties += [("accel", a), ("cell", str(_item_cell(request.node)))]
    return a


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # Stash each phase's report on the item so fixtures can tell a failed test at teardown.
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def _failed(node) -> bool:
    return any(getattr(node, f"rep_{w}", None) is not None and getattr(node, f"rep_{w}").failed
               for w in ("setup", "call"))


@pytest.fixture
def guest_factory(request):
    """make(**GuestConfig fields) -> a launched Guest. All are shut down and reaped at teardown;
    on failure the console and QEMU logs are copied to results/artifacts/<test>/."""
    guests: list[Guest] = []
    cell = _item_cell(request.node)
    accel = request.node.funcargs.get("guest_accel") or request.config.balloon_accel

    def make(start: str = "restore", **kw) -> Guest:
        """start: "restore" (the default: harness/vm/saved_guest.py) or "boot"."""
        kw.setdefault("accel", accel)
        booked = cell_of({"dims": kw})
        if booked != cell:  # the cell selector and the results' labels read the test's parameters
            pytest.fail(f"this test boots {booked} but its parameters put it in {cell}: pass kernel/qemu through "
                        "a `kernel`, `kernel_qemu` or `dims` parameter (harness/cells.py)", pytrace=False)
        g = Guest.provisioned(GuestConfig(**kw), start=start)
        guests.append(g)  # before launch: a failed launch is reaped too
        g.launch()
        return g

    yield make
    failed = _failed(request.node)
    for i, g in enumerate(guests):
        g.shutdown(keep_logs=True)
        if g.rundir is None:
            continue  # never launched
        if failed and g.rundir.exists():  # a test may have shut its guest down itself
            dest = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.nodeid) / str(i)
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(g.rundir, dest)
            request.node.add_report_section("teardown", "artifacts", f"guest logs: {dest}")
        shutil.rmtree(g.rundir, ignore_errors=True)


# Every dimension a night is compared on (harness/report/nightly.py reads these back, defensively).
PHASE_FIELDS = ("kernel", "qemu", "backend", "drop_mib", "ram_drop_mib", "predicted_mib", "predicted_lo_mib",
                "predicted_hi_mib", "verdict", "seconds_to_90pct", "predicted_seconds_to_90pct", "freed_mib",
                "scenario", "accel", "memory_mib", "smp", "numa_nodes", "host_thp", "reporting", "reporting_order",
                "hugepage_mib", "host_page_size", "start_mode", "metric", "reportable_mib")


@pytest.fixture
def report(record_property):
    """report(result): record every phase's measured vs predicted figures in the JUnit XML
    (one property per phase), for ci/results_table.py to turn into a table."""
    import json

    def rec(result: dict) -> None:
        for ph in result.get("phases") or [result]:
            row = {k: ph.get(k, result.get(k)) for k in PHASE_FIELDS}
            lay = ph.get("layout") or {}
            row.update(layout_real=lay.get("real"), layout_matched=lay.get("matched"),
                       layout_predicted=lay.get("predicted"), layout_decay_ticks=lay.get("decay_ticks"),
                       layout_differences=lay.get("differences"), layout_unexplained=lay.get("unexplained"),
                       layout_beyond=lay.get("beyond"),
                       decay_late_blocks=lay.get("decay_late_blocks"), measured_t90_s=ph.get("measured_t90_s"),
                       t90_interval_s=ph.get("predicted_t90_interval_s"),
                       terms={t["name"]: [t["lo_mib"], t["hi_mib"]] for t in ph.get("terms", [])},
                       free_memory={k: (ph.get("free_memory") or {}).get(k)
                                    for k in ("measured_mib", "expected_mib", "lo_mib", "hi_mib", "verdict")},
                       # where the phase's time went (the result's timings are its last phase's)
                       end_s=(ph.get("end") or {}).get("waited_s"), end=ph.get("end"),
                       worker_wait_s=(ph.get("pre") or {}).get("worker_wait_s"),
                       decay_synced=(ph.get("pre") or {}).get("decay_synced", False),
                       sync_age_ms=(ph.get("pre") or {}).get("sync_age_ms"),
                       pcp_at_release=(ph.get("pre") or {}).get("pcp_at_release"),
                       timings=result.get("timings") if ph is (result.get("phases") or [result])[-1] else None)
            record_property(f"phase:{ph.get('phase', 'main')}", json.dumps(row))
    return rec
