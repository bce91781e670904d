"""Pure: a GuestConfig and the run's resources -> the QEMU argv. No I/O here."""
from __future__ import annotations

from dataclasses import dataclass

from .config import GuestConfig


@dataclass(frozen=True)
class Resources:
    """What the launcher provides for one run."""
    qemu: str  # path of qemu-system-x86_64
    kernel: str
    initrd: str
    base_cmdline: str  # from the image recipe
    qmp_fd: int  # our end of a socketpair is kept; this end is inherited by QEMU
    console_log: str
    ssh_port: int
    ssh_pubkey_b64: str  # the base64 part of an ssh-ed25519 public key


def kernel_cmdline(cfg: GuestConfig, res: Resources) -> str:
    args = [res.base_cmdline, f"e2e.sshkey={res.ssh_pubkey_b64}"]
    if cfg.reporting_order is not None:
        args.append(f"e2e.reporting_order={cfg.reporting_order}")
    return " ".join(args + list(cfg.kernel_args))


def build(cfg: GuestConfig, res: Resources) -> list[str]:
    if cfg.accel not in ("kvm", "tcg"):
        raise ValueError(f"accel must be resolved before building the argv, got {cfg.accel!r}")
    backend = {
        "anon": f"memory-backend-ram,id=ram0,size={cfg.memory_mib}M",
        "memfd": f"memory-backend-memfd,id=ram0,size={cfg.memory_mib}M,share=on",
    }[cfg.backend]
    balloon = ("virtio-balloon-pci,id=balloon0"
               f",free-page-reporting={'on' if cfg.reporting else 'off'}"
               f",free-page-hint={'on' if cfg.hinting else 'off'}")
    if cfg.hinting:
        balloon += ",iothread=iot0"  # QEMU requires an iothread for free page hinting
    argv = [
        res.qemu,
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-machine", f"{cfg.machine},memory-backend=ram0",
        "-accel", "kvm" if cfg.accel == "kvm" else "tcg,thread=multi",
        "-cpu", "host" if cfg.accel == "kvm" else "max",
        "-smp", str(cfg.smp),
        "-m", f"{cfg.memory_mib}M",
        "-object", backend,
        "-kernel", res.kernel, "-initrd", res.initrd,
        "-append", kernel_cmdline(cfg, res),
        "-chardev", f"socket,id=qmp,fd={res.qmp_fd}", "-mon", "chardev=qmp,mode=control",
        "-chardev", f"file,id=con,path={res.console_log}", "-serial", "chardev:con",
        # restrict=on: the guest reaches nothing outside; only the forwarded port comes in.
        "-netdev", f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{res.ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=n0,romfile=",
    ]
    if cfg.hinting:
        argv += ["-object", "iothread,id=iot0"]
    return argv + ["-device", balloon]
