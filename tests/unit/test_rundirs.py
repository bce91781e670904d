"""Stale run directories: removed only when their owner is gone, by pid and start ticks."""
import os
import subprocess
import tempfile

from harness.vm import guest


def _dir(root, name, tag):
    d = root / f"balloon-e2e-{name}"
    d.mkdir()
    (d / "owner").write_text(tag)
    return d


def test_only_a_gone_owners_directory_is_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = _dir(tmp_path, "mine", guest._owner_tag())
    gone = _dir(tmp_path, "gone", f"{dead.pid} 1")
    reused = _dir(tmp_path, "reused", f"{os.getpid()} {guest.start_ticks(os.getpid()) + 1}")
    legacy = _dir(tmp_path, "legacy", f"{os.getpid()} 1796293216.25")   # a wall-clock create time
    removed = set(guest.sweep_stale_rundirs())
    assert removed == {gone, reused}
    assert mine.exists() and legacy.exists()


def test_start_ticks_do_not_follow_the_wall_clock():
    # the same process read twice: equal (a create time derived from the boot time need not be)
    assert guest.start_ticks(os.getpid()) == guest.start_ticks(os.getpid()) > 0
