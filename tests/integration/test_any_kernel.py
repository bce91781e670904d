"""Any kernel makes an image: a Debian version through apt, the same kernel as a .deb, and
as a bzImage with its modules directory; modules resolved by depmod/modprobe agree."""
import json
import shutil
import subprocess

import pytest

from harness.build import apt, image

OTHER = "6.1.0-47-cloud-amd64"  # outside the default pair: another ABI and the cloud flavour


@pytest.fixture(scope="module")
def deb():
    pkg = image.debian_kernel(OTHER)
    debs = image.cache_dir() / "debs"
    debs.mkdir(exist_ok=True)
    return apt.fetch(pkg, debs)


def _manifest(img):
    return json.loads((img.dir / "manifest.json").read_text())


def test_a_version_a_deb_and_a_bzimage_give_the_same_kernel_and_modules(deb, tmp_path, capfd):
    by_version = image.get(OTHER)
    by_deb = image.get(str(deb))
    root = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    (bz,) = (root / "boot").glob("vmlinuz-*")
    by_bzimage = image.get(str(bz), modules=str(root / "lib" / "modules" / OTHER))
    for img in (by_version, by_deb, by_bzimage):
        m = _manifest(img)
        assert m["kernel_release"] == OTHER
        assert {"virtio_pci", "virtio_net", "virtio_balloon", "virtio"} <= set(m["modules"])
    mods = [_manifest(i)["modules"] for i in (by_version, by_deb, by_bzimage)]
    assert mods[0] == mods[1] == mods[2]
    assert by_version.kernel.read_bytes() == by_deb.kernel.read_bytes() == by_bzimage.kernel.read_bytes()
    assert image.cached(str(bz), modules=str(root / "lib" / "modules" / OTHER)) == by_bzimage.dir
    shutil.rmtree(by_bzimage.dir)  # keyed by this test's temporary paths: never found again
    assert capfd.readouterr().out == ""  # the image build prints nothing on stdout (progress is logging)


def test_modules_come_in_dependency_order(deb, tmp_path):
    root = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    order = [n for n, _ in image.modules_in_load_order(root, OTHER, ["virtio_balloon", "virtio_net"])]
    assert order.index("virtio_ring") < order.index("virtio_balloon")
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")


def test_a_missing_module_is_named(deb, tmp_path):
    root = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    from harness.errors import UserError
    with pytest.raises(UserError, match="module no_such_mod neither built in"):
        image.modules_in_load_order(root, OTHER, ["no_such_mod"])


def test_an_unknown_version_is_one_line_of_bad_input(capsys, tmp_path):
    from harness.cli import main
    assert main(["run", "--guest-kernel", "5.10-nonexistent", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no Debian package linux-image-5.10-nonexistent in bookworm, trixie, bookworm-backports" in err
    assert len(err.splitlines()) == 1 and not list(tmp_path.iterdir())
