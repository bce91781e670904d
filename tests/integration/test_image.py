"""The guest image: reproducible, cached, never half-built. Uses apt metadata and the .deb cache."""
import hashlib
import os
import stat

import pytest

from harness.build import image

from harness.vm import keys


def _digest(d):
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in ("vmlinuz", "initrd.cpio")}


def test_two_builds_from_the_same_inputs_are_byte_identical(tmp_path):
    key, pkgs = image.resolve("6.1")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    image.build_into(a, "6.1", pkgs, key)
    image.build_into(b, "6.1", pkgs, key)
    assert _digest(a) == _digest(b)
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()


def test_cached_image_matches_its_manifest():
    img = image.get("6.1")
    import json
    m = json.loads((img.dir / "manifest.json").read_text())
    assert m["sha256"] == _digest(img.dir)
    assert img.dir.name.endswith(m["key"])


def test_changed_recipe_changes_the_key(tmp_path, monkeypatch):
    import shutil
    key, _ = image.resolve("6.1")
    copy = tmp_path / "guest_images"
    shutil.copytree(image.GUEST_IMAGES, copy)
    monkeypatch.setattr(image, "GUEST_IMAGES", copy)
    assert image.resolve("6.1")[0] == key  # same contents elsewhere: same key
    with open(copy / "rootfs" / "etc" / "rcS", "a") as f:
        f.write("# changed\n")
    assert image.resolve("6.1")[0] != key


def test_interrupted_build_leaves_no_complete_looking_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("BALLOON_E2E_CACHE", str(tmp_path))

    def boom(out, *a, **kw):
        (out / "vmlinuz").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(image, "build_into", boom)
    with pytest.raises(KeyboardInterrupt):
        image.get("6.1")
    assert [p.name for p in (tmp_path / "images").iterdir() if not p.name.startswith(".lock")] == []


def test_ssh_key_is_private_to_the_user(tmp_path, monkeypatch):
    monkeypatch.setenv("BALLOON_E2E_CACHE", str(tmp_path))
    key, pub = keys.key_pair()
    path = tmp_path / "ssh" / "id_ed25519"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert keys.key_pair()[1] == pub  # made once per cache
    assert pub.startswith("AAAAC3NzaC1lZDI1NTE5")  # ssh-ed25519


def test_unknown_kernel_is_a_one_line_error():
    from harness.errors import UserError
    with pytest.raises(UserError, match="no Debian package linux-image-5.10-nonexistent"):
        image.resolve("5.10-nonexistent")
