"""deflate-on-oom reaches the balloon device only when asked (pure argv)."""
from harness.vm import qemu_argv
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


def test_cli_takes_the_balloon_scenarios_and_refuses_a_bad_switch(capsys, monkeypatch):
    import pytest

    from harness.cli import main, parser
    a = parser().parse_args(["run", "deflate-on-oom", "--deflate-on-oom", "on"])
    assert a.scenario == "deflate-on-oom" and a.deflate_on_oom is True
    assert parser().parse_args(["run", "stats"]).deflate_on_oom is False
    monkeypatch.setattr("harness.vm.guest.Guest.launch", lambda self: pytest.fail("no guest for bad input"))
    with pytest.raises(SystemExit) as e:
        main(["run", "inflate", "--deflate-on-oom", "maybe"])
    assert e.value.code == 2 and "on or off" in capsys.readouterr().err
