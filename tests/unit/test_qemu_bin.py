"""Finding QEMU by spec, without running a guest (fake binaries print a version)."""
import os
import stat
from pathlib import Path

import pytest

from harness.vm import qemu_bin
from harness.errors import UserError


def fake_qemu(tmp_path, version, name="qemu-system-x86_64"):
    p = tmp_path / name
    p.write_text(f"#!/bin/sh\necho 'QEMU emulator version {version} (Debian test)'\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


@pytest.mark.parametrize("text,v", [
    ("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright", "7.2.22"),
    ("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)", "10.0.2"),
])
def test_parse_version(text, v):
    assert qemu_bin.parse_version(text) == v


@pytest.mark.parametrize("version,series,want", [
    ("10.0.2", "10.0", True), ("10.0", "10.0", True), ("10.00.1", "10.0", False), ("1.0.2", "10.0", False),
    ("7.2.22", "7.2", True), ("7.20.1", "7.2", False), ("10.1.0", "10.0", False)])
def test_series_matches(version, series, want):
    assert qemu_bin.series_matches(version, series) is want


@pytest.mark.parametrize("spec", ["9.2", "latest", "qemu", "10", ""])
def test_unknown_spec_is_one_line_user_error(spec):
    with pytest.raises(UserError) as e:
        qemu_bin.find(spec)
    assert "\n" not in str(e.value) and "7.2, 10.0" in str(e.value)


def test_a_path_is_used_as_given(tmp_path):
    p = fake_qemu(tmp_path, "9.9.9")
    q = qemu_bin.find(str(p))
    assert q.path == p and q.version == "9.9.9" and q.data_dirs == ()


def test_a_missing_path_is_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match="not an executable file"):
        qemu_bin.find(str(tmp_path / "nope"))


def test_72_must_really_be_72(tmp_path, monkeypatch):
    fake_qemu(tmp_path, "8.2.1")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(UserError, match="QEMU 7.2 wanted, but .* is 8.2.1"):
        qemu_bin.find("7.2")
    fake_qemu(tmp_path, "7.2.22")
    assert qemu_bin.find("7.2").version == "7.2.22"


def test_default_honours_the_environment(tmp_path, monkeypatch):
    p = fake_qemu(tmp_path, "6.6.6", name="my-qemu")
    monkeypatch.setenv("BALLOON_E2E_QEMU", str(p))
    assert qemu_bin.find().path == p


def test_10_0_is_extracted_once_and_carries_its_firmware_dirs(tmp_path, monkeypatch):
    """backports(): apt resolves, each .deb is extracted, the binary must say 10.0.x; then cached."""
    from harness.build import apt

    monkeypatch.setenv("BALLOON_E2E_CACHE", str(tmp_path / "cache"))
    pkgs = [apt.Package(n, "1:10.0.2", f"sha-{n}", f"{n}.deb", "bookworm-backports")
            for n in qemu_bin.BACKPORTS_PACKAGES]
    calls = {"resolve": 0, "extract": []}

    def resolve(names, suite):
        assert suite == "bookworm-backports" and tuple(names) == qemu_bin.BACKPORTS_PACKAGES
        calls["resolve"] += 1
        return pkgs

    def fetch(p, debs):
        return debs / p.filename

    real_run = qemu_bin.subprocess.run

    def run(args, **kw):
        if args[0] == "dpkg-deb":
            calls["extract"].append(os.path.basename(args[2]))
            bindir = os.path.join(args[3], "usr/bin")
            os.makedirs(bindir, exist_ok=True)
            fake_qemu(Path(bindir), "10.0.2")
            return None
        return real_run(args, **kw)

    monkeypatch.setattr(apt, "resolve", resolve)
    monkeypatch.setattr(apt, "fetch", fetch)
    monkeypatch.setattr(qemu_bin.subprocess, "run", run)
    q = qemu_bin.find("10.0")
    assert q.version == "10.0.2" and q.path.name == "qemu-system-x86_64"
    assert [d.parts[-3:] for d in q.data_dirs] == [("usr", "share", "qemu"), ("usr", "share", "seabios")]
    assert calls["extract"] == [f"{n}.deb" for n in qemu_bin.BACKPORTS_PACKAGES]
    assert qemu_bin.find("10.0") == q and len(calls["extract"]) == 3  # cached: not extracted again
    assert not list((tmp_path / "cache" / "qemu").glob(".tmp-*"))


def test_10_0_refuses_another_series(tmp_path, monkeypatch):
    from harness.build import apt

    monkeypatch.setenv("BALLOON_E2E_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(apt, "resolve", lambda names, suite: [apt.Package("qemu-system-x86", "1", "s", "q.deb", suite)])
    monkeypatch.setattr(apt, "fetch", lambda p, debs: debs / p.filename)
    real_run = qemu_bin.subprocess.run

    def run(args, **kw):
        if args[0] == "dpkg-deb":
            bindir = Path(args[3]) / "usr/bin"
            bindir.mkdir(parents=True, exist_ok=True)
            fake_qemu(bindir, "10.1.0")
            return None
        return real_run(args, **kw)

    monkeypatch.setattr(qemu_bin.subprocess, "run", run)
    with pytest.raises(UserError, match="10.1.0, not 10.0.x"):
        qemu_bin.find("10.0")
    assert not list((tmp_path / "cache" / "qemu").iterdir()) or \
        all(p.name.startswith(".lock") for p in (tmp_path / "cache" / "qemu").iterdir())
