"""Fixtures: guests owned by a factory that always reaps them; logs kept only on failure."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.config import GuestConfig
from harness.guest import Guest
from harness.paths import REPO

ARTIFACTS = REPO / "results" / "artifacts"

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


def pytest_collection_modifyitems(config, items):
    # The default run is a sensible subset; `matrix` tests join with --matrix full.
    if config.getoption("matrix") == "full":
        return
    keep, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("matrix") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_generate_tests(metafunc):
    if "kernel_qemu" in metafunc.fixturenames:
        full = metafunc.config.getoption("matrix") == "full"
        pairs = [(k, q) for k in KERNELS for q in QEMUS] if full else list(DEFAULT_PAIRS)
        metafunc.parametrize("kernel_qemu", pairs, ids=[f"kernel{k}-qemu{q}" for k, q in pairs])


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

    def make(**kw) -> Guest:
        g = Guest(GuestConfig(**kw))
        guests.append(g)  # before launch: a failed launch is reaped too
        g.launch()
        return g

    yield make
    failed = _failed(request.node)
    for i, g in enumerate(guests):
        g.shutdown(keep_logs=True)
        if failed:
            dest = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.nodeid) / str(i)
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(g.rundir, dest)
            request.node.add_report_section("teardown", "artifacts", f"guest logs: {dest}")
        shutil.rmtree(g.rundir, ignore_errors=True)


PHASE_FIELDS = ("kernel", "qemu", "backend", "drop_mib", "ram_drop_mib", "predicted_mib", "predicted_lo_mib",
                "predicted_hi_mib", "verdict", "seconds_to_90pct", "predicted_seconds_to_90pct", "freed_mib")


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
                       layout_predicted=lay.get("predicted"), measured_t90_s=ph.get("measured_t90_s"),
                       t90_interval_s=ph.get("predicted_t90_interval_s"),
                       terms={t["name"]: [t["lo_mib"], t["hi_mib"]] for t in ph.get("terms", [])})
            record_property(f"phase:{ph.get('phase', 'main')}", json.dumps(row))
    return rec
