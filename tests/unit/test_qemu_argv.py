import pytest

from harness import qemu_argv
from harness.config import GuestConfig

RES = qemu_argv.Resources(qemu="/usr/bin/qemu-system-x86_64", kernel="/img/vmlinuz", initrd="/img/initrd.cpio",
                          base_cmdline="console=ttyS0 panic=-1", qmp_fd=7, console_log="/run/console.log",
                          ssh_port=40022, ssh_pubkey_b64="AAAAKEY")


def opt(argv, flag):
    """All values given to `flag`."""
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_default_guest_has_reporting_balloon_and_anonymous_ram():
    argv = qemu_argv.build(GuestConfig(accel="tcg"), RES)
    assert argv[0] == RES.qemu
    assert "virtio-balloon-pci,id=balloon0,free-page-reporting=on,free-page-hint=off" in opt(argv, "-device")
    assert opt(argv, "-object") == ["memory-backend-ram,id=ram0,size=2048M"]
    assert opt(argv, "-m") == ["2048M"] and opt(argv, "-smp") == ["2"]
    assert opt(argv, "-machine") == ["q35,memory-backend=ram0"]
    assert opt(argv, "-accel") == ["tcg,thread=multi"] and opt(argv, "-cpu") == ["max"]
    assert "-no-reboot" in argv and "-nodefaults" in argv


def test_reporting_off_and_hinting_needs_iothread():
    argv = qemu_argv.build(GuestConfig(accel="tcg", reporting=False, hinting=True), RES)
    balloon = [d for d in opt(argv, "-device") if d.startswith("virtio-balloon")][0]
    assert "free-page-reporting=off" in balloon and "free-page-hint=on" in balloon
    assert "iothread=iot0" in balloon and "iothread,id=iot0" in opt(argv, "-object")


def test_kvm_uses_host_cpu():
    argv = qemu_argv.build(GuestConfig(accel="kvm"), RES)
    assert opt(argv, "-accel") == ["kvm"] and opt(argv, "-cpu") == ["host"]


def test_memfd_backend_is_shared():
    argv = qemu_argv.build(GuestConfig(accel="tcg", backend="memfd", memory_mib=4096), RES)
    assert opt(argv, "-object") == ["memory-backend-memfd,id=ram0,size=4096M,share=on"]


def test_ssh_forward_is_loopback_only_and_guest_is_restricted():
    netdev = opt(qemu_argv.build(GuestConfig(accel="tcg"), RES), "-netdev")[0]
    assert "hostfwd=tcp:127.0.0.1:40022-:22" in netdev and "restrict=on" in netdev


def test_qmp_over_inherited_fd_and_console_to_file():
    argv = qemu_argv.build(GuestConfig(accel="tcg"), RES)
    assert "socket,id=qmp,fd=7" in opt(argv, "-chardev")
    assert "file,id=con,path=/run/console.log" in opt(argv, "-chardev")


def test_kernel_cmdline_carries_key_order_and_extra_args_as_one_argument():
    cfg = GuestConfig(accel="tcg", reporting_order=10, kernel_args=("init_on_free=1",))
    (append,) = opt(qemu_argv.build(cfg, RES), "-append")
    assert append == "console=ttyS0 panic=-1 e2e.sshkey=AAAAKEY e2e.reporting_order=10 init_on_free=1"


def test_unresolved_accel_is_refused():
    with pytest.raises(ValueError, match="resolved"):
        qemu_argv.build(GuestConfig(accel="auto"), RES)
