"""What a guest is: one frozen config, validated in one place.

Every value that reaches the QEMU command line or the guest's kernel command
line passes through here, so the argv builder can trust it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import UserError

ACCELS = ("auto", "kvm", "tcg")
BACKENDS = ("anon", "memfd")
MACHINES = ("q35", "pc")
_KARG = re.compile(r"^[A-Za-z0-9_.,:=+/-]+$")  # one kernel argument: no spaces, quotes or shell syntax


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
    accel: str = "auto"  # resolved to kvm or tcg before the argv is built (harness/accel.py)
    machine: str = "q35"
    reporting: bool = True  # virtio-balloon free-page-reporting
    hinting: bool = False  # virtio-balloon free-page-hint
    backend: str = "anon"
    reporting_order: int | None = None  # None: the kernel's default
    kernel: str = "6.1"
    kernel_args: tuple[str, ...] = field(default_factory=tuple)

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
