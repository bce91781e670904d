"""Saved guests: which configurations restore, the key, one build under the lock, clean."""
import threading
import time

import pytest

from harness.vm import saved_guest
from harness.config import GuestConfig


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BALLOON_E2E_CACHE", str(tmp_path))
    return tmp_path


def test_only_anonymous_ram_without_hinting_restores():
    assert saved_guest.unrestorable(GuestConfig()) is None
    assert saved_guest.unrestorable(GuestConfig(kernel="6.12", numa_nodes=2, host_thp=False)) is None
    for cfg in (GuestConfig(backend="memfd"), GuestConfig(backend="file"), GuestConfig(backend="hugetlbfs"),
                GuestConfig(hinting=True), GuestConfig(kernel_args=("page_poison=1",)),
                GuestConfig(kernel_args=("init_on_free=1",))):
        assert saved_guest.unrestorable(cfg), cfg


def test_the_key_follows_every_input():
    argv = ["qemu", "-m", "2048M", "-append", "console=ttyS0 e2e.key=AAAA"]
    k = saved_guest.key_of(argv, "7.2.22 /usr/bin/qemu 1 2", "host")
    assert k == saved_guest.key_of(list(argv), "7.2.22 /usr/bin/qemu 1 2", "host")
    assert len({k, saved_guest.key_of(argv[:2] + ["1024M"] + argv[3:], "7.2.22 /usr/bin/qemu 1 2", "host"),
                saved_guest.key_of(argv, "7.2.22 /usr/bin/qemu 1 3", "host"),
                saved_guest.key_of(argv, "7.2.22 /usr/bin/qemu 1 2", "other host")}) == 4


def test_parallel_starts_build_one_saved_guest(cache):
    saved = saved_guest.Saved("k1")
    built = []

    def build(path):
        built.append(path)
        time.sleep(0.2)  # long enough for the other thread to queue on the lock
        path.write_bytes(b"stream")
        return {"bytes": 6}

    metas = []
    threads = [threading.Thread(target=lambda: metas.append(saved_guest.ensure(saved, build))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and metas == [{"bytes": 6}] * 2
    assert saved.state.read_bytes() == b"stream"


def test_a_failed_build_leaves_nothing(cache):
    saved = saved_guest.Saved("k2")

    def build(path):
        path.write_bytes(b"partial")
        raise RuntimeError("boot failed")

    with pytest.raises(RuntimeError):
        saved_guest.ensure(saved, build)
    assert not saved.exists() and not list(saved.dir.iterdir())


def test_clean_removes_every_saved_guest(cache):
    for k in ("a", "b"):
        saved_guest.ensure(saved_guest.Saved(k), lambda p: (p.write_bytes(b"x"), {})[1])
    assert sorted(d.name for d in saved_guest.clean()) == ["a", "b"]
    assert not any(saved_guest.saved_dir().iterdir())


def _guest(monkeypatch, tmp_path, **cfg):
    from harness.vm import guest as guest_mod
    from harness.build.image import Image
    from harness.vm.qemu_bin import Qemu
    img = Image(kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd", cmdline="console=ttyS0", kernel_release="6.1.0-57-amd64", key="k")
    q = Qemu(path=tmp_path / "qemu-system-x86_64", version="7.2.22")
    return guest_mod.Guest(GuestConfig(**cfg), guest_mod.Provisioned(img, q, "tcg"))


def test_the_key_does_not_see_the_host_only_parts(cache, monkeypatch, tmp_path):
    # two guests of one configuration: different run folders (console paths), and the argv's
    # QMP fd, SSH port and disk path are fixed before hashing
    a, b = _guest(monkeypatch, tmp_path), _guest(monkeypatch, tmp_path)
    a._make_rundir(), b._make_rundir()
    assert a.rundir != b.rundir
    assert a.portable_argv() == b.portable_argv()
    assert not any(str(a.rundir) in x for x in a.portable_argv())
    # a configuration that reaches the guest is another key
    c = _guest(monkeypatch, tmp_path, memory_mib=1024)
    assert c.portable_argv() != a.portable_argv()
    for g in (a, b, c):
        g.shutdown()


def test_an_unrestorable_configuration_boots_and_says_why(cache, monkeypatch, tmp_path):
    g = _guest(monkeypatch, tmp_path, backend="memfd")
    assert g.start_mode == "boot" and "memfd" in g.start_note
    g.shutdown()


def test_a_guests_constructor_does_no_io(cache, monkeypatch, tmp_path):
    # the lookups are Guest.provisioned's, the run directory launch's
    from harness.vm import guest as guest_mod
    monkeypatch.setattr(guest_mod, "_provision", lambda *a: pytest.fail("the constructor provisioned"))
    monkeypatch.setattr(guest_mod.tempfile, "mkdtemp", lambda **k: pytest.fail("the constructor made a directory"))
    g = _guest(monkeypatch, tmp_path)
    assert g.rundir is None and g.shutdown() == "not started"
    _guest_in(tmp_path / "folder")
    assert not (tmp_path / "folder").exists()


def _guest_in(rundir):
    from harness.vm import guest as guest_mod
    from harness.build.image import Image
    from harness.vm.qemu_bin import Qemu
    img = Image(kernel=rundir / "vmlinuz", initrd=rundir / "initrd", cmdline="", kernel_release="6.1.0-57-amd64", key="k")
    return guest_mod.Guest(GuestConfig(), guest_mod.Provisioned(img, Qemu(path=rundir / "q", version="7.2.22"), "tcg"),
                           rundir=rundir)
