"""Host resources a guest's RAM backing needs, held for the guest's lifetime and given back.

- file: a tmpfs directory (/dev/shm); QEMU creates its RAM file there and
  unlinks it at once.
- hugetlbfs: huge pages of the configured size, reserved by raising that
  size's nr_hugepages by what the guest needs (under a lock, so parallel
  guests add and remove only their own share) and put back afterwards; a
  hugetlbfs mount of that size (an existing one, else one of our own in the
  guest's private run directory, unmounted afterwards).
- host THP: PR_SET_THP_DISABLE for QEMU alone (see thp_disable); nothing
  system-wide changes.

Parsers are pure; the rest does the I/O. A host that cannot provide a
backing raises HostUnsupported (a UserError), whose message says why: tests
skip on it.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

from harness.config import GuestConfig
from harness.errors import UserError
from harness.paths import cache_dir

TMPFS_DIR = "/dev/shm"
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
PR_SET_THP_DISABLE = 41  # include/uapi/linux/prctl.h; inherited by children, kept across execve
_libc = ctypes.CDLL(None, use_errno=True)


class HostUnsupported(UserError):
    """This host cannot provide what the configuration asks for (the message says why)."""


# --- pure ---------------------------------------------------------------------

def parse_mounts(text: str) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """/proc/mounts -> (source, target, fstype, options); octal escapes (\\040) decoded."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4:
            dec = lambda s: s.encode().decode("unicode_escape")  # noqa: E731
            out.append((dec(f[0]), dec(f[1]), f[2], tuple(f[3].split(","))))
    return out


def hugetlbfs_mounts(mounts, page_mib: int) -> list[str]:
    """Mount points of hugetlbfs with `page_mib` pages (the kernel always shows pagesize=)."""
    want = {f"pagesize={page_mib}M", f"pagesize={page_mib * 1024}K"}
    if page_mib % 1024 == 0:
        want.add(f"pagesize={page_mib // 1024}G")
    return [t for _, t, fs, opts in mounts if fs == "hugetlbfs" and want & set(opts)]


def is_tmpfs(mounts, path: str) -> bool:
    """Is `path` itself a mount point of tmpfs (the last mount there wins)?"""
    fs = [fst for _, t, fst, _ in mounts if t == path]
    return bool(fs) and fs[-1] == "tmpfs"


def thp_mode(text: str) -> str:
    """'always [madvise] never' -> 'madvise'."""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    raise ValueError(f"no [mode] in {text!r}")


def hugepages_dir(page_mib: int) -> Path:
    return Path(f"/sys/kernel/mm/hugepages/hugepages-{page_mib * 1024}kB")


# --- I/O ------------------------------------------------------------------------

def _mounts() -> list:
    return parse_mounts(Path("/proc/mounts").read_text())


def host_thp_mode() -> str:
    try:
        return thp_mode(Path(THP_ENABLED).read_text())
    except (OSError, ValueError):
        return "unavailable"


def thp_disable() -> None:
    """In the child between fork and exec: no THP for this process (and so for QEMU)."""
    if _libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0:
        # cannot honour host THP off: better no QEMU than a wrong measurement
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_THP_DISABLE)")


def hugetlb_unsupported(page_mib: int) -> str | None:
    """Why this host cannot back a guest with `page_mib` huge pages, or None."""
    if "hugetlbfs" not in Path("/proc/filesystems").read_text():
        return "the host kernel has no hugetlbfs"
    d = hugepages_dir(page_mib)
    if not d.is_dir():
        return f"the host kernel has no {page_mib} MiB huge pages ({d} missing)"
    if not os.access(d / "nr_hugepages", os.W_OK):
        return f"reserving huge pages needs root ({d / 'nr_hugepages'} not writable)"
    return None


@contextmanager
def hugepages_reserved(page_mib: int, count: int):
    """Raise nr_hugepages of `page_mib` pages by `count` for the block; put it back after.

    Under a lock, so concurrent guests each add and remove only their own share.
    The kernel may give fewer pages than asked (no contiguous memory, e.g. for
    1 GiB pages): then the count is put back and HostUnsupported raised.
    """
    why = hugetlb_unsupported(page_mib)
    if why:
        raise HostUnsupported(why)
    nr = hugepages_dir(page_mib) / "nr_hugepages"

    def adjust(delta: int) -> tuple[int, int]:
        with open(cache_dir() / ".hugepages.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            old = int(nr.read_text())
            nr.write_text(f"{max(0, old + delta)}\n")
            return old, int(nr.read_text())

    old, got = adjust(count)
    try:
        if got < old + count:
            raise HostUnsupported(f"the host gave {got - old} of {count} {page_mib} MiB huge pages "
                                  f"(nr_hugepages {old} -> {got}; not enough contiguous free memory)")
        yield
    finally:
        adjust(-(got - old))


@contextmanager
def hugetlbfs_mount(page_mib: int, private_dir: Path):
    """A hugetlbfs mount point of `page_mib` pages: an existing one, else our own, unmounted after."""
    have = hugetlbfs_mounts(_mounts(), page_mib)
    if have:
        yield have[0]
        return
    target = private_dir / f"hugetlbfs-{page_mib}M"
    target.mkdir(mode=0o700)
    r = subprocess.run(["mount", "-t", "hugetlbfs", "-o", f"pagesize={page_mib}M,mode=0700", "none", str(target)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        target.rmdir()
        raise HostUnsupported(f"cannot mount hugetlbfs with {page_mib} MiB pages: {r.stderr.strip() or r.returncode}")
    try:
        yield str(target)
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)
        try:
            target.rmdir()
        except OSError:
            pass


@contextmanager
def backing(cfg: GuestConfig, private_dir: Path):
    """Everything the host must provide for cfg's RAM, held for the block; yields the mem_path
    for harness/qemu_argv.Resources (None for anon and memfd)."""
    if cfg.host_thp is True and host_thp_mode() not in ("always", "madvise"):
        raise HostUnsupported(f"host THP is {host_thp_mode()!r} system-wide; QEMU's guest RAM can be THP-backed "
                              f"only in 'madvise' or 'always' mode ({THP_ENABLED})")
    if cfg.backend in ("anon", "memfd"):
        yield None
    elif cfg.backend == "file":
        if not is_tmpfs(_mounts(), TMPFS_DIR):
            raise HostUnsupported(f"{TMPFS_DIR} is not a tmpfs")
        st = os.statvfs(TMPFS_DIR)
        if st.f_bavail * st.f_frsize < cfg.memory_mib << 20:
            raise HostUnsupported(f"{TMPFS_DIR} has less than {cfg.memory_mib} MiB free")
        yield TMPFS_DIR
    elif cfg.backend == "hugetlbfs":
        with hugepages_reserved(cfg.hugepage_mib, cfg.memory_mib // cfg.hugepage_mib), \
                hugetlbfs_mount(cfg.hugepage_mib, private_dir) as path:
            yield path
    else:
        raise UserError(f"backend {cfg.backend!r}")
