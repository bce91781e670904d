"""A deterministic cpio 'newc' writer (the initramfs format the kernel unpacks).

Pure: entries in, bytes out. Owner root, mtime 0, inode numbers by position,
entries sorted by path, so the same inputs always give the same bytes.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    path: str  # relative, no leading '/'
    mode: int  # full st_mode, type bits included
    data: bytes = b""  # file contents, or the target of a symlink
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node


def directory(path: str, perm: int = 0o755) -> Entry:
    return Entry(path, stat.S_IFDIR | perm)


def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(path, stat.S_IFREG | perm, data)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, stat.S_IFLNK | 0o777, target.encode())


def chardev(path: str, major: int, minor: int, perm: int = 0o600) -> Entry:
    return Entry(path, stat.S_IFCHR | perm, rdev=(major, minor))


def _header(ino: int, e: Entry, name: bytes, size: int) -> bytes:
    nlink = 2 if stat.S_ISDIR(e.mode) else 1
    fields = (ino, e.mode, 0, 0, nlink, 0, size, 0, 0, *e.rdev, len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def archive(entries: list[Entry]) -> bytes:
    seen = set()
    for e in entries:
        if e.path in seen or e.path.startswith("/") or not e.path:
            raise ValueError(f"cpio: bad or duplicate path {e.path!r}")
        seen.add(e.path)
    out = []
    for ino, e in enumerate(sorted(entries, key=lambda e: e.path), start=1):
        name = e.path.encode()
        head = _header(ino, e, name, len(e.data)) + name + b"\0"
        out += [head, _pad(len(head)), e.data, _pad(len(e.data))]
    trailer = b"070701" + b"%08X" * 13 % (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0) + b"TRAILER!!!\0"
    out += [trailer, _pad(len(trailer))]
    return b"".join(out)
