"""Boot once, restore many: per configuration, a guest saved once it booted and reported.

A saved guest is QEMU's migration stream of a guest that booted, finished its boot-time
reporting passes (nothing left to report: perblock.wait_reported) and was stopped. A
Guest started with `start="restore"` runs the same argv plus `-incoming exec:cat STATE`,
then `cont`, then SSH: 0.35 s to load and 0.85 s to SSH measured here (2 GiB, QEMU 7.2,
TCG), against 7.5-12 s of boot and ~16 s of boot-time passes.

The key is everything QEMU and the guest were started from: the argv with its host-only
parts replaced (QMP fd, console path, SSH port, disk path: docs/devel/migration says the
two sides must be launched with the same arguments, and these do not reach the guest),
which names the image's files, the cache key pair and QEMU's path; QEMU's version and
file identity; and the host (a saved guest is never used on another machine: under KVM
the CPU must be the same). Any change of input is a new key; old entries stay on disk
until `balloon-e2e image clean`.

Which configurations restore (the rest boot, saying why): anonymous RAM only. QEMU's
load reads every page it loads as zero (ram_handle_zero: buffer_is_zero on the
destination page); on anonymous memory that read maps the host's zero page, in no RSS
(harness/measure/pagemap.py leaves it out of the host's residency), while a read of a hole in
shmem or hugetlbfs allocates a page [inferred from mm/shmem.c shmem_fault, not measured],
which a booted guest would not have. Free page hinting is left out: a guest with
hinting migrated by QEMU 7.2 crashed its destination in this suite (hint-migrate). So are
guests whose free pages are not zero (page_poison, init_on_free): their stream is all of RAM.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import GuestError
from harness.paths import cache_dir

log = logging.getLogger(__name__)
SAVE_TIMEOUT_S = 120.0
LOAD_TIMEOUT_S = 60.0
STARTS = ("restore", "boot")


def unrestorable(cfg) -> str | None:
    """Pure: why this configuration boots instead of restoring, or None."""
    if cfg.backend != "anon":
        # measured, memfd 2 GiB 6.1 x 7.2: RAM mapping 146 MiB booted, 2048 MiB restored
        return (f"backend {cfg.backend}: QEMU's load reads each zero page, and a read of fd-backed "
                "RAM allocates what a booted guest never held (memfd: all of RAM)")
    if cfg.hinting:
        return "free page hinting: a migrated hinting guest crashed its destination on QEMU 7.2"
    poison = [a for a in cfg.kernel_args if a.split("=")[0] in ("page_poison", "init_on_free")]
    if poison:
        # measured: page_poison=1, 2 GiB: a 2.1 GB stream, saved in 15.8 s; a boot is cheaper
        return f"{poison[0]}: free pages are not zero, the saved stream would hold all of RAM"
    return None


def key_of(portable_argv: list[str], qemu_identity: str, host: str) -> str:
    """Pure: the saved guest's name for this argv (host-only parts replaced), QEMU and host."""
    h = hashlib.sha256(json.dumps([portable_argv, qemu_identity, host]).encode())
    return h.hexdigest()[:20]


def qemu_identity(path: Path, version: str) -> str:
    st = path.stat()
    return f"{version} {path} {st.st_size} {st.st_mtime_ns}"


def host_identity() -> str:
    """This machine: its machine-id, name and CPU (a KVM restore needs the same host CPU)."""
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = ""
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return f"{machine} {socket.gethostname()} {model}"


@dataclass(frozen=True)
class Saved:
    key: str

    @property
    def dir(self) -> Path:
        return saved_dir() / self.key

    @property
    def state(self) -> Path:
        return self.dir / "state.bin"

    @property
    def meta(self) -> Path:
        return self.dir / "meta.json"

    def exists(self) -> bool:
        return self.state.exists() and self.meta.exists()


def saved_dir() -> Path:
    d = cache_dir() / "saved"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def clean() -> list[Path]:
    """Remove every saved guest, each under its lock (not while a worker builds one)."""
    removed = []
    for d in sorted(p for p in saved_dir().iterdir() if p.is_dir()):
        with open(saved_dir() / f"{d.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            shutil.rmtree(d, ignore_errors=True)
        (saved_dir() / f"{d.name}.lock").unlink(missing_ok=True)
        removed.append(d)
    return removed


def ensure(saved: Saved, build) -> dict:
    """The saved guest's meta, built by `build(tmp_state_path) -> meta` first if missing.
    Under a lock per key: parallel workers wanting one configuration build it once."""
    with open(saved_dir() / f"{saved.key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not saved.exists():
            saved.dir.mkdir(mode=0o700, exist_ok=True)
            tmp = saved.dir / f".state.{os.getpid()}"
            try:
                meta = build(tmp)
                os.replace(tmp, saved.state)
                saved.meta.write_text(json.dumps(meta, indent=1) + "\n")
            finally:
                tmp.unlink(missing_ok=True)
        return json.loads(saved.meta.read_text())


def save(guest, path: Path) -> float:
    """Stop `guest` and write its migration stream to `path`. Seconds taken. SSH is closed
    first: libslirp saves no TCP connection, and the guest's side would wait for a dead one."""
    if guest.ssh:
        guest.ssh.close()
        guest.ssh = None
    t = time.monotonic()
    guest.qmp_cmd("stop")
    guest.qmp_cmd("migrate", uri=f"exec:cat > {path}")
    status = wait_migration(guest, SAVE_TIMEOUT_S, "saving the guest")
    if status != "completed":
        raise GuestError(f"saving the guest: migration {status}")
    return time.monotonic() - t


def wait_migration(guest, timeout: float, what: str) -> str:
    """Poll query-migrate until the migration ends; its final status."""
    deadline = time.monotonic() + timeout
    while True:
        status = guest.qmp_cmd("query-migrate").get("status")
        if status in ("completed", "failed", "cancelled"):
            return status
        if not guest.alive() or time.monotonic() > deadline:
            raise GuestError(f"{what}: migration still {status!r} after {timeout:.0f} s "
                             f"(QEMU exit code {guest.proc.poll()})")
        time.sleep(0.02)  # a poll of QEMU's own state; the deadline bounds it
