import pytest

from harness.vm import qemu_argv
from harness.config import GuestConfig
from harness.errors import UserError

RES = qemu_argv.Resources(qemu="q", kernel="k", initrd="i", base_cmdline="c", qmp_fd=3, console_log="l",
                          ssh_port=1, ssh_pubkey_b64="K")


def test_no_disk_by_default():
    assert "-drive" not in qemu_argv.build(GuestConfig(accel="tcg"), RES)


def test_disk_is_a_raw_virtio_blk_drive():
    import dataclasses
    argv = qemu_argv.build(GuestConfig(accel="tcg", disk_mib=1024), dataclasses.replace(RES, disk="/run/d.raw"))
    i = argv.index("-drive")
    assert argv[i + 1].startswith("file=/run/d.raw,if=none,id=d0,format=raw")
    assert "virtio-blk-pci,drive=d0" in argv


def test_disk_without_a_file_is_refused():
    with pytest.raises(ValueError):
        qemu_argv.build(GuestConfig(accel="tcg", disk_mib=16), RES)


def test_disk_size_validated():
    with pytest.raises(UserError, match="disk"):
        GuestConfig(disk_mib=-1)
