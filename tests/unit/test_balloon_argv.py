"""deflate-on-oom reaches the balloon device only when asked (pure argv)."""
from harness import qemu_argv
from harness.config import GuestConfig

RES = qemu_argv.Resources(qemu="/usr/bin/qemu-system-x86_64", kernel="/img/vmlinuz", initrd="/img/initrd.cpio",
                          base_cmdline="console=ttyS0", qmp_fd=7, console_log="/run/console.log",
                          ssh_port=40022, ssh_pubkey_b64="AAAAKEY")


def opt(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def _balloon(cfg):
    return [d for d in opt(qemu_argv.build(cfg, RES), "-device") if d.startswith("virtio-balloon")]


def test_deflate_on_oom_off_by_default():
    (dev,) = _balloon(GuestConfig(accel="tcg"))
    assert "deflate-on-oom" not in dev  # QEMU's default is off


def test_deflate_on_oom_on():
    (dev,) = _balloon(GuestConfig(accel="tcg", deflate_on_oom=True))
    assert dev.startswith("virtio-balloon-pci,id=balloon0,") and dev.endswith(",deflate-on-oom=on")
