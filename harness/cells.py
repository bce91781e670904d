"""Kernel x QEMU cells: which cell a test belongs to, read from its parameters (pure).

A nightly shard runs the tests of its cells only, so it fetches only their guest images and
QEMU builds. A test's cell comes from a `kernel_qemu` pair, a `kernel` parameter, or a `dims`
dict of GuestConfig fields; anything else boots the defaults, 6.1 x 7.2. conftest.py's
guest_factory fails a test that boots another cell than its parameters say, so these labels
stay true.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from harness.errors import UserError

DEFAULT_KERNEL = "6.1"
DEFAULT_QEMU = "7.2"  # qemu=None is the system's QEMU: bookworm's 7.2
ALL_CELLS = tuple((k, q) for k in ("6.1", "6.12") for q in ("7.2", "10.0"))


@dataclass(frozen=True, order=True)
class Cell:
    kernel: str
    qemu: str

    def __str__(self) -> str:
        return f"{self.kernel}x{self.qemu}"


def cell_of(params: Mapping[str, Any]) -> Cell:
    """The cell of a test from its parameters (pytest's callspec.params)."""
    kernel, qemu = DEFAULT_KERNEL, DEFAULT_QEMU
    if "kernel_qemu" in params:
        kernel, qemu = params["kernel_qemu"]
    if isinstance(params.get("kernel"), str):
        kernel = params["kernel"]
    dims = params.get("dims")
    if isinstance(dims, Mapping):
        kernel = dims.get("kernel") or kernel
        qemu = dims.get("qemu") or qemu
    return Cell(str(kernel), str(qemu))


def parse_cells(spec: str | None) -> frozenset[Cell] | None:
    """'6.1x7.2,6.12x10.0' -> cells; 'all' -> every cell; None -> no selection."""
    if spec is None:
        return None
    if spec.strip() == "all":
        return frozenset(Cell(k, q) for k, q in ALL_CELLS)
    out = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        k, sep, q = part.partition("x")
        if not sep or not k or not q:
            raise UserError(f"--cells: {part!r} is not KERNELxQEMU (e.g. 6.1x7.2)")
        out.add(Cell(k, q))
    if not out:
        raise UserError("--cells: no cell given")
    return frozenset(out)
