"""The QEMU binary and its version."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError


@dataclass(frozen=True)
class Qemu:
    path: Path
    version: str


def parse_version(text: str) -> str:
    m = re.search(r"QEMU emulator version (\S+)", text)
    if not m:
        raise UserError(f"cannot read a QEMU version from {text[:80]!r}")
    return m.group(1)


def find(path: str | None = None) -> Qemu:
    """$BALLOON_E2E_QEMU, else qemu-system-x86_64 on PATH (installed by ci/setup.sh)."""
    p = path or os.environ.get("BALLOON_E2E_QEMU") or shutil.which("qemu-system-x86_64")
    if not p or not os.access(p, os.X_OK):
        raise UserError("qemu-system-x86_64 not found (run ci/setup.sh, or set BALLOON_E2E_QEMU)")
    out = subprocess.run([p, "--version"], capture_output=True, text=True)
    return Qemu(Path(p), parse_version(out.stdout))
