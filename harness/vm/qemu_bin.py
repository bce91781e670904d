"""The QEMU binary and its version: the system's, bookworm-backports', or a given path.

"7.2" is bookworm's own qemu-system-x86_64 (installed by ci/setup.sh). "10.0"
is bookworm-backports' QEMU, fetched through the private apt list
(harness/build/apt.py) and extracted with dpkg-deb -x into the cache, never
installed: it runs on bookworm's own libraries. Its firmware comes from the
same extraction (qemu-system-data, and the backports seabios its package
depends on), passed to QEMU with -L.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.build import apt
from harness.config import QEMU_VERSIONS
from harness.errors import UserError
from harness.paths import cache_dir

log = logging.getLogger(__name__)

SYSTEM_QEMU = "/usr/bin/qemu-system-x86_64"
# What a -kernel/-initrd boot of q35 needs from bookworm-backports: the binary,
# its data (linuxboot_dma.bin, ...) and the BIOS its package depends on (seabios >> 1.16.3).
BACKPORTS = "bookworm-backports"
BACKPORTS_PACKAGES = ("qemu-system-x86", "qemu-system-data", "seabios")
BACKPORTS_DATA_DIRS = ("usr/share/qemu", "usr/share/seabios")


@dataclass(frozen=True)
class Qemu:
    path: Path
    version: str
    data_dirs: tuple[Path, ...] = ()  # -L, in search order; empty: QEMU's built-in paths


def parse_version(text: str) -> str:
    m = re.search(r"QEMU emulator version (\S+)", text)
    if not m:
        raise UserError(f"cannot read a QEMU version from {text[:80]!r}")
    return m.group(1)


def series_matches(version: str, series: str) -> bool:
    """Pure: '10.0.2' is of series '10.0'; '10.00.1' and '1.0.2' are not."""
    return version == series or version.startswith(series + ".")


def version_of(path: str | Path) -> str:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise UserError(f"{path}: cannot run it ({e.strerror})") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
        raise UserError(f"{path} --version failed: {last}")
    return parse_version(out.stdout)


def _executable(p: str | None) -> bool:
    return bool(p) and os.path.isfile(p) and os.access(p, os.X_OK)


def find(spec: str | None = None) -> Qemu:
    """spec None: $BALLOON_E2E_QEMU, else qemu-system-x86_64 on PATH (installed by ci/setup.sh).
    "7.2": the system's QEMU, which must be 7.2.x. "10.0": bookworm-backports' (fetched and
    extracted once). Anything with a '/': that binary. Anything else: a one-line UserError."""
    if spec is None:
        p = os.environ.get("BALLOON_E2E_QEMU") or shutil.which("qemu-system-x86_64")
        if not _executable(p):
            raise UserError("qemu-system-x86_64 not found (run ci/setup.sh, or set BALLOON_E2E_QEMU)")
        return Qemu(Path(p), version_of(p))
    if spec == "7.2":
        p = shutil.which("qemu-system-x86_64") or SYSTEM_QEMU
        if not _executable(p):
            raise UserError("QEMU 7.2: qemu-system-x86_64 not installed (run ci/setup.sh)")
        v = version_of(p)
        if not series_matches(v, "7.2"):
            raise UserError(f"QEMU 7.2 wanted, but {p} is {v} (7.2 is Debian bookworm's)")
        return Qemu(Path(p), v)
    if spec == "10.0":
        return backports()
    if "/" in spec:
        if not _executable(spec):
            raise UserError(f"QEMU {spec}: not an executable file")
        return Qemu(Path(spec), version_of(spec))
    raise UserError(f"QEMU {spec!r} not one of {', '.join(QEMU_VERSIONS)} or a path to a qemu-system-x86_64")


def backports() -> Qemu:
    """bookworm-backports' QEMU 10.0.x, extracted (not installed) into the cache once.

    The cache entry is keyed by the exact package versions and hashes apt
    resolves; it is extracted in a temporary directory, checked to run, and
    renamed into place under a lock, so parallel workers extract once and an
    interrupted extraction never looks complete.
    """
    pkgs = apt.resolve(list(BACKPORTS_PACKAGES), BACKPORTS)
    key = hashlib.sha256("".join(f"{p.name}={p.version} {p.sha256}\n" for p in pkgs).encode()).hexdigest()[:16]
    base = cache_dir() / "qemu"
    base.mkdir(exist_ok=True)
    final = base / f"10.0-{key}"
    if not (final / "version").exists():
        with open(base / f".lock-10.0-{key}", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (final / "version").exists():
                log.info("extracting QEMU from %s into %s (once)", BACKPORTS, final)
                debs = cache_dir() / "debs"
                debs.mkdir(exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=".tmp-10.0-", dir=base))
                try:
                    for p in pkgs:
                        subprocess.run(["dpkg-deb", "-x", str(apt.fetch(p, debs)), str(tmp / "root")], check=True)
                    v = version_of(tmp / "root/usr/bin/qemu-system-x86_64")
                    if not series_matches(v, "10.0"):
                        raise UserError(f"{BACKPORTS} has QEMU {v}, not 10.0.x")
                    (tmp / "version").write_text(v + "\n")
                    os.rename(tmp, final)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
    root = final / "root"
    return Qemu(root / "usr/bin/qemu-system-x86_64", (final / "version").read_text().strip(),
                tuple(root / d for d in BACKPORTS_DATA_DIRS))
