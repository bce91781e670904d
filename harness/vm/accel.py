"""Choose the accelerator: KVM only where it can really work, else TCG."""
from __future__ import annotations

import os

from harness.errors import UserError


def choose(requested: str, cpu_flags: set[str], kvm_opens: bool) -> str:
    """Pure: 'auto' -> kvm iff the CPU shows vmx/svm and /dev/kvm opens.

    A /dev/kvm without vmx/svm exists on nested paravirtual hosts (kvm-pvm) where
    a guest does not even reach init: it must not be picked silently.
    """
    hw = bool(cpu_flags & {"vmx", "svm"})
    if requested == "tcg":
        return "tcg"
    if requested == "kvm":
        if not kvm_opens:
            raise UserError("accel kvm: /dev/kvm cannot be opened (use --accel tcg or auto)")
        if not hw:
            raise UserError("accel kvm: the CPU shows no vmx/svm, KVM here cannot run a guest (use --accel tcg or auto)")
        return "kvm"
    if requested == "auto":
        return "kvm" if hw and kvm_opens else "tcg"
    raise UserError(f"accel {requested!r} not one of auto, kvm, tcg")


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def kvm_opens(path: str = "/dev/kvm") -> bool:
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def probe(requested: str) -> str:
    with open("/proc/cpuinfo") as f:
        flags = cpu_flags(f.read())
    return choose(requested, flags, kvm_opens())
