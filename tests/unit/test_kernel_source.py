"""Any kernel: telling a file from a version, reading a bzImage's release, modprobe's answer."""
import pytest

from harness.build import image
from harness.errors import UserError


def _bzimage(release: str) -> bytes:
    data = bytearray(0x1000)
    data[0x202:0x206] = b"HdrS"
    data[0x20E:0x210] = (0x400 - 0x200).to_bytes(2, "little")
    s = f"{release} (me@box) #1 SMP PREEMPT_DYNAMIC".encode()
    data[0x400:0x400 + len(s)] = s
    return bytes(data)


def test_bzimage_release():
    assert image.bzimage_release(_bzimage("6.18.0-rc1-mine+")) == "6.18.0-rc1-mine+"


@pytest.mark.parametrize("data", [b"", b"\0" * 0x1000, b"MZ" + b"\0" * 0x400])
def test_not_a_bzimage_is_bad_input(data):
    with pytest.raises(UserError, match="not an x86 bzImage"):
        image.bzimage_release(data)


def test_local_kernels(tmp_path):
    bz = tmp_path / "bzImage"
    bz.write_bytes(_bzimage("6.6.0"))
    mods = tmp_path / "mods"
    mods.mkdir()
    assert image.local_kernel(str(bz), str(mods)).modules == mods
    deb = tmp_path / "linux-image-6.6.0_1_amd64.deb"
    deb.write_bytes(b"!<arch>\n")
    assert image.local_kernel(str(deb), None).deb == deb
    with pytest.raises(UserError, match="carries its own modules"):
        image.local_kernel(str(deb), str(mods))
    with pytest.raises(UserError, match="no such file"):
        image.local_kernel(str(tmp_path / "nope"), None)
    with pytest.raises(UserError, match="not a directory"):
        image.local_kernel(str(bz), str(tmp_path / "nope"))
    junk = tmp_path / "vmlinux"
    junk.write_bytes(b"\x7fELF" + b"\0" * 0x1000)
    with pytest.raises(UserError, match="not an x86 bzImage"):
        image.local_kernel(str(junk), None)


def test_kernel_names():
    assert image.is_local("./bzImage") and image.is_local("linux-image-6.1.0-47-amd64_6.1.158-1_amd64.deb")
    assert not image.is_local("6.1") and not image.is_local("6.1.0-47-cloud-amd64")
    assert image.label("6.12.117+deb12-amd64") == "6.12.117+deb12-amd64"
    assert image.label("/x/y/bz Image") == "local-bz_Image"


def test_show_depends():
    out = ("insmod /r/lib/modules/6.1.0-57-amd64/kernel/drivers/virtio/virtio.ko \n"
           "insmod /r/lib/modules/6.1.0-57-amd64/kernel/drivers/virtio/virtio_ring.ko \n"
           "builtin virtio_pci\n"
           "insmod /r/lib/modules/6.1.0-57-amd64/kernel/drivers/virtio/virtio_balloon.ko.xz opt=1\n")
    assert [p.rsplit("/", 1)[1] for p in image.parse_show_depends(out)] == [
        "virtio.ko", "virtio_ring.ko", "virtio_balloon.ko.xz"]
