import stat

import pytest

from harness.build import cpio


def read_newc(data: bytes):
    """A minimal newc reader, independent of the writer, to check what it wrote."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, size = f[11], f[6]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos:pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (f[1], body, (f[9], f[10]), f[2], f[5])


def test_roundtrip_modes_links_devices_and_root_owner():
    entries = [cpio.directory("etc"), cpio.file("etc/x", b"hello", 0o600), cpio.symlink("bin/sh", "busybox"),
               cpio.directory("bin"), cpio.chardev("dev/console", 5, 1), cpio.directory("dev")]
    got = read_newc(cpio.archive(entries))
    assert list(got) == ["bin", "bin/sh", "dev", "dev/console", "etc", "etc/x"]  # sorted
    mode, body, _, uid, mtime = got["etc/x"]
    assert stat.S_ISREG(mode) and mode & 0o777 == 0o600 and body == b"hello" and uid == 0 and mtime == 0
    assert stat.S_ISLNK(got["bin/sh"][0]) and got["bin/sh"][1] == b"busybox"
    assert stat.S_ISCHR(got["dev/console"][0]) and got["dev/console"][2] == (5, 1)


def test_same_entries_in_any_order_give_the_same_bytes():
    a = [cpio.file("b", b"2"), cpio.file("a", b"1")]
    assert cpio.archive(a) == cpio.archive(list(reversed(a)))


@pytest.mark.parametrize("path", ["/abs", "", "dup"])
def test_bad_paths_are_refused(path):
    entries = [cpio.file(path, b"")] + ([cpio.file("dup", b"")] if path == "dup" else [])
    with pytest.raises(ValueError):
        cpio.archive(entries)
