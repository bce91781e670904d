"""Kernel x QEMU cells: read from a test's parameters; the cells partition the full matrix."""
import subprocess
import sys

import pytest

from harness.cells import ALL_CELLS, Cell, cell_of, parse_cells
from harness.errors import UserError
from harness.paths import REPO


@pytest.mark.parametrize("params,want", [
    ({}, Cell("6.1", "7.2")),
    ({"kernel_qemu": ("6.12", "10.0")}, Cell("6.12", "10.0")),
    ({"kernel": "6.12", "effective": 10}, Cell("6.12", "7.2")),
    ({"dims": {"qemu": "10.0", "backend": "memfd"}}, Cell("6.1", "10.0")),
    ({"dims": {"numa_nodes": 2, "kernel": "6.12"}}, Cell("6.12", "7.2")),
    ({"dims": {"kernel": None, "qemu": None}}, Cell("6.1", "7.2")),  # guest_factory's defaults
    ({"mib": 256}, Cell("6.1", "7.2")),
])
def test_cell_of(params, want):
    assert cell_of(params) == want


def test_parse_cells():
    assert parse_cells(None) is None
    assert parse_cells("6.1x7.2, 6.12x10.0") == {Cell("6.1", "7.2"), Cell("6.12", "10.0")}
    assert parse_cells("all") == {Cell(k, q) for k, q in ALL_CELLS}
    for bad in ("6.1", "x7.2", ",", "6.1-7.2"):
        with pytest.raises(UserError):
            parse_cells(bad)


def _collect(*args) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/e2e", "--matrix", "full", "--collect-only", "-q",
                        "-p", "no:cacheprovider", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 5), r.stdout[-2000:] + r.stderr[-2000:]
    return [line for line in r.stdout.splitlines() if "::" in line]


def test_cells_partition_the_full_matrix():
    every = _collect()
    per_cell = {c: _collect("--cells", f"{c[0]}x{c[1]}") for c in ALL_CELLS}
    union = [t for ids in per_cell.values() for t in ids]
    assert sorted(union) == sorted(every) and len(set(union)) == len(union)
    assert per_cell[("6.12", "10.0")] == [t for t in every if "kernel6.12-qemu10.0" in t]
    assert any("[qemu-10.0-memfd-" in t for t in per_cell[("6.1", "10.0")])
    assert any("[numa-2-guest-6.12-" in t for t in per_cell[("6.12", "7.2")])
    # the accelerator ends every id of a test that boots a guest
    assert all(t.endswith(("-tcg]", "[tcg]", "-kvm]", "[kvm]")) for t in every)
