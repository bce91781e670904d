"""Pure: a GuestConfig and the run's resources -> the QEMU argv. No I/O here."""
from __future__ import annotations

from dataclasses import dataclass

from harness.config import GuestConfig


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
    # Firmware/data directories for -L, searched in order (a QEMU extracted from its .deb)
    data_dirs: tuple[str, ...] = ()
    # The directory QEMU creates (and at once unlinks) its RAM file in: a tmpfs for the
    # `file` backend, a hugetlbfs mount of the configured page size for `hugetlbfs`
    mem_path: str | None = None
    disk: str | None = None  # the raw disk file, when cfg.disk_mib > 0
    # A migration destination: QEMU waits for the stream on this URI (e.g. unix:PATH)
    # instead of booting; the rest of the argv must equal the source's.
    incoming: str | None = None


# Under TCG a vCPU runs many times slower than the host, while the soft-lockup detector counts
# host seconds: the 6.1 hinting worker (virtio_balloon send_free_pages, no cond_resched,
# each block zeroed by init_on_alloc) held a vCPU 26 s on this 2-core host and the default
# threshold (2 x 10 s) called it a lockup. The kernel's largest threshold, 2 x 60 s, keeps the
# detector for real hangs.
TCG_WATCHDOG_THRESH_S = 60


def kernel_cmdline(cfg: GuestConfig, res: Resources) -> str:
    args = [res.base_cmdline, f"e2e.sshkey={res.ssh_pubkey_b64}"]
    if cfg.accel == "tcg":
        args.append(f"watchdog_thresh={TCG_WATCHDOG_THRESH_S}")
    if cfg.reporting_order is not None:
        args.append(f"e2e.reporting_order={cfg.reporting_order}")
    return " ".join(args + list(cfg.kernel_args))


def _opt(value: str) -> str:
    """A value inside a QEMU -object/-numa option list: a comma is written twice."""
    return value.replace(",", ",,")


def memory_backend(cfg: GuestConfig, res: Resources, node: int) -> str:
    """The -object for node `node`'s RAM (id ram<node>).

    share=on for the fd-backed ones: QEMU discards a reported range of an fd with
    fallocate(PUNCH_HOLE), which frees a shared mapping's pages; a private (COW)
    mapping of the file would keep them (QEMU ram_block_discard_range).
    """
    head = f"id=ram{node},size={cfg.node_mib}M"
    if cfg.backend == "anon":
        return f"memory-backend-ram,{head}"
    if cfg.backend == "memfd":
        return f"memory-backend-memfd,{head},share=on"
    if not res.mem_path:
        raise ValueError(f"backend {cfg.backend} needs a mem_path from the launcher")
    # mem-path is a directory: QEMU creates its file there and unlinks it at once,
    # so nothing is left behind whatever happens to QEMU.
    return f"memory-backend-file,{head},mem-path={_opt(res.mem_path)},share=on"


def _cpus(r: range) -> str:
    return f"{r.start}-{r.stop - 1}" if len(r) > 1 else str(r.start)


def build(cfg: GuestConfig, res: Resources) -> list[str]:
    if cfg.accel not in ("kvm", "tcg"):
        raise ValueError(f"accel must be resolved before building the argv, got {cfg.accel!r}")
    if cfg.numa_nodes == 1:
        memory = ["-machine", f"{cfg.machine},memory-backend=ram0", "-m", f"{cfg.memory_mib}M",
                  "-object", memory_backend(cfg, res, 0)]
    else:
        memory = ["-machine", cfg.machine, "-m", f"{cfg.memory_mib}M"]
        for n in range(cfg.numa_nodes):
            memory += ["-object", memory_backend(cfg, res, n),
                       "-numa", f"node,nodeid={n},cpus={_cpus(cfg.node_cpus(n))},memdev=ram{n}"]
    balloon = ("virtio-balloon-pci,id=balloon0"
               f",free-page-reporting={'on' if cfg.reporting else 'off'}"
               f",free-page-hint={'on' if cfg.hinting else 'off'}")
    if cfg.deflate_on_oom:
        balloon += ",deflate-on-oom=on"
    if cfg.hinting:
        balloon += ",iothread=iot0"  # QEMU requires an iothread for free page hinting
    argv = [
        res.qemu,
        *[a for d in res.data_dirs for a in ("-L", d)],
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-accel", "kvm" if cfg.accel == "kvm" else "tcg,thread=multi",
        "-cpu", "host" if cfg.accel == "kvm" else "max",
        # with NUMA, one socket per node (see GuestConfig.numa_nodes)
        "-smp", str(cfg.smp) if cfg.numa_nodes == 1 else
        f"{cfg.smp},sockets={cfg.numa_nodes},cores={cfg.smp // cfg.numa_nodes},threads=1",
        *memory,
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
    if cfg.disk_mib:
        if not res.disk:
            raise ValueError("disk_mib set but no disk file given")
        argv += ["-drive", f"file={res.disk},if=none,id=d0,format=raw",
                 "-device", "virtio-blk-pci,drive=d0"]
    argv += ["-device", balloon]
    if res.incoming:
        argv += ["-incoming", res.incoming]
    return argv
