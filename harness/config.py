"""What a guest is: one frozen config, validated in one place.

Every value that reaches the QEMU command line or the guest's kernel command
line passes through here, so the argv builder can trust it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.errors import UserError

ACCELS = ("auto", "kvm", "tcg")
# Guest RAM backing (harness/vm/qemu_argv.py renders them):
#   anon       memory-backend-ram: private anonymous memory (THP when the host allows it)
#   memfd      memory-backend-memfd,share=on: shmem
#   file       memory-backend-file,share=on on tmpfs (/dev/shm): shmem through a file
#   hugetlbfs  memory-backend-file,share=on on a hugetlbfs mount: hugetlb pages of hugepage_mib
BACKENDS = ("anon", "memfd", "file", "hugetlbfs")
HUGEPAGE_MIB = (2, 1024)  # x86_64 hugetlb sizes
MACHINES = ("q35", "pc")
QEMU_VERSIONS = ("7.2", "10.0")  # bookworm's system QEMU; bookworm-backports' (harness/vm/qemu_bin.py)
NUMA_NODES = (1, 2)
PAGE = 4096
_KERNEL = re.compile(r"^[^\s\0]{1,4096}$")  # a version or a path: no spaces (it names a cache entry)
_KARG = re.compile(r"^[A-Za-z0-9_.,:=+/-]+$")  # one kernel argument: no spaces, quotes or shell syntax


def model_host(backend: str) -> tuple[str, str]:
    """Pure: a backend as configured -> (the backend harness/model/discard.py knows, the metric that moves).

    A file on tmpfs is shmem, discarded like memfd (fallocate PUNCH_HOLE, then
    madvise: QEMU ram_block_discard_range). Hugetlb pages are outside a process's
    Rss (smaps counts them as Shared/Private_Hugetlb), so for hugetlbfs only the
    guest RAM mapping can show a drop.
    """
    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r} not one of {', '.join(BACKENDS)}")
    return {"file": "memfd"}.get(backend, backend), ("mapping" if backend == "hugetlbfs" else "rss")


def parse_mib(text: str | int) -> int:
    """'2048', '2G', '512M' -> MiB. Errors are one line."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([MmGg]?)(?:i?[Bb])?\s*", str(text))
        if not m:
            raise UserError(f"not a size: {text!r} (use e.g. 2048, 512M or 2G)")
        value = int(m.group(1)) * (1024 if m.group(2).lower() == "g" else 1)
    return value


@dataclass(frozen=True)
class GuestConfig:
    memory_mib: int = 2048
    smp: int = 2
    accel: str = "auto"  # resolved to kvm or tcg before the argv is built (harness/vm/accel.py)
    machine: str = "q35"
    reporting: bool = True  # virtio-balloon free-page-reporting
    hinting: bool = False  # virtio-balloon free-page-hint
    backend: str = "anon"
    reporting_order: int | None = None  # None: the kernel's default
    # "6.1" / "6.12" (the recipe's), any Debian linux-image version, or a path to a linux-image
    # .deb or a bzImage (harness/build/image.py); `modules`: the bzImage's modules directory
    kernel: str = "6.1"
    modules: str | None = None
    kernel_args: tuple[str, ...] = field(default_factory=tuple)
    # None: $BALLOON_E2E_QEMU, else qemu-system-x86_64 on PATH; "7.2", "10.0", or a path (harness/vm/qemu_bin.py)
    qemu: str | None = None
    hugepage_mib: int = 2  # hugetlb page size of the hugetlbfs backend
    numa_nodes: int = 1  # guest NUMA nodes: RAM and vCPUs split evenly, one memory backend and socket each
    disk_mib: int = 0  # >0: a sparse raw virtio-blk disk of this size (/dev/vda), for page-cache data
    # Host transparent huge pages for the guest's anonymous RAM. None: as the host has it
    # (QEMU madvises guest RAM MADV_HUGEPAGE, so THP in `madvise` or `always` mode backs it).
    # True: the same, but the host mode must allow it. False: PR_SET_THP_DISABLE on QEMU alone.
    host_thp: bool | None = None
    # virtio-balloon deflate-on-oom (VIRTIO_BALLOON_F_DEFLATE_ON_OOM): the guest gives 1 MiB
    # of the balloon back per global OOM, and MemTotal no longer drops as the balloon grows
    deflate_on_oom: bool = False

    def __post_init__(self):
        if not (128 <= self.memory_mib <= 1 << 20):
            raise UserError(f"memory {self.memory_mib} MiB out of range (128 MiB .. 1 TiB)")
        if not (1 <= self.smp <= 64):
            raise UserError(f"smp {self.smp} out of range (1..64)")
        for name, value, allowed in (("accel", self.accel, ACCELS), ("backend", self.backend, BACKENDS),
                                     ("machine", self.machine, MACHINES)):
            if value not in allowed:
                raise UserError(f"{name} {value!r} not one of {', '.join(allowed)}")
        if self.reporting_order is not None and not (0 <= self.reporting_order <= 10):
            raise UserError(f"reporting order {self.reporting_order} out of range (0..10)")
        for a in self.kernel_args:
            if not _KARG.match(a):
                raise UserError(f"kernel argument {a!r} has characters outside [A-Za-z0-9_.,:=+/-]")
        if not _KERNEL.match(self.kernel):
            raise UserError(f"guest kernel {self.kernel!r}: not a version or a path")
        if self.modules is not None and not ("/" in self.kernel and not self.kernel.endswith(".deb")):
            raise UserError("--modules goes with --kernel PATH of a bzImage")
        if self.qemu is not None and self.qemu not in QEMU_VERSIONS and "/" not in self.qemu:
            raise UserError(f"QEMU {self.qemu!r} not one of {', '.join(QEMU_VERSIONS)} or a path to a qemu-system-x86_64")
        if self.hugepage_mib not in HUGEPAGE_MIB:
            raise UserError(f"huge page size {self.hugepage_mib} MiB not one of {', '.join(map(str, HUGEPAGE_MIB))}")
        if self.hugepage_mib != 2 and self.backend != "hugetlbfs":
            raise UserError("a huge page size applies only to the hugetlbfs backend")
        if not 0 <= self.disk_mib <= 1 << 20:
            raise UserError(f"disk {self.disk_mib} MiB out of range (0 .. 1 TiB)")
        if self.numa_nodes not in NUMA_NODES:
            raise UserError(f"NUMA nodes {self.numa_nodes} not one of {', '.join(map(str, NUMA_NODES))}")
        # One socket per node: vCPUs of one socket share a cache, and the guest kernel warns
        # (arch/x86/kernel/smpboot.c topology_sane) when cache siblings sit on different nodes.
        if self.smp % self.numa_nodes:
            raise UserError(f"{self.smp} vCPUs do not split evenly into {self.numa_nodes} NUMA nodes")
        # Each node's RAM is a whole number of the backing's pages (and of 2 MiB, so no
        # reportable block of order 9 straddles two nodes).
        unit = self.host_page_size // (1 << 20) if self.backend == "hugetlbfs" else 2
        if self.memory_mib % (self.numa_nodes * unit):
            raise UserError(f"memory {self.memory_mib} MiB does not split into {self.numa_nodes} node(s) "
                            f"of whole {unit} MiB pages")
        if self.host_thp is not None and self.backend != "anon":
            raise UserError(f"host THP applies to anonymous RAM (backend anon), not {self.backend}")

    @property
    def host_page_size(self) -> int:
        """Bytes of one host page backing guest RAM (QEMU's qemu_ram_pagesize)."""
        return self.hugepage_mib << 20 if self.backend == "hugetlbfs" else PAGE

    @property
    def node_mib(self) -> int:
        return self.memory_mib // self.numa_nodes

    def node_cpus(self, node: int) -> range:
        """The vCPUs of `node` (its socket's): consecutive, smp / numa_nodes of them."""
        per = self.smp // self.numa_nodes
        return range(node * per, (node + 1) * per)
