"""Made-up guests: a freshly booted x86_64 guest, and a mixed allocation trace for it.

For tests, the benchmark and what-ifs when no real capture exists. Zone
spans follow QEMU's q35 RAM layout; watermarks, lowmem reserves and pcp sizes
follow the kernel's boot-time formulas (mm/page_alloc.c
__setup_per_zone_wmarks, setup_per_zone_lowmem_reserve, zone_batchsize,
zone_highsize), so gates and budgets see plausible numbers.
"""
from __future__ import annotations

import math
import random

from harness.model.buddy import Machine, Zone
from harness.model.kernel import KernelSpec, kernel_spec
from tests.sim.trace import Fragment, Free, Register, Touch

MIB_PAGES = 256
FOUR_GIB_PFN = 1 << 20


def q35_lowmem_pages(memory_mib: int) -> int:
    # QEMU hw/i386/pc_q35.c: RAM >= 0xb0000000 -> 2 GiB below 4G, the rest above
    lowmem = 0x80000000 if memory_mib * (1 << 20) >= 0xB0000000 else memory_mib * (1 << 20)
    return lowmem >> 12


def _batch(managed: int) -> int:
    # mm/page_alloc.c zone_batchsize (6.1)
    batch = min(managed >> 10, (1 << 20) // 4096) // 4
    batch = max(batch, 1)
    return (1 << int(math.log2(batch + batch // 2))) - 1 if batch > 1 else 1


def fresh_machine(kernel: str, memory_mib: int, *, smp: int = 2, reserved_mib: float | None = None,
                  pcp: bool = True, spec: KernelSpec | None = None) -> Machine:
    """A guest just after boot: all RAM free and unreported but `reserved_mib` (kernel, memmap,
    initramfs) at the bottom of DMA32; every pageblock MOVABLE (memmap_init)."""
    spec = spec or kernel_spec(kernel)
    total = memory_mib * MIB_PAGES
    low = q35_lowmem_pages(memory_mib)
    spans = [("DMA", 1, 4096), ("DMA32", 4096, low)]
    if total > low:
        spans.append(("Normal", FOUR_GIB_PFN, FOUR_GIB_PFN + total - low))
    managed = {n: e - s for n, s, e in spans}
    lowmem_pages = sum(managed.values())
    # __setup_per_zone_wmarks: min_free_kbytes = sqrt(lowmem_kbytes * 16), clamped
    min_free_kb = min(max(int(math.isqrt(lowmem_pages * 4 * 16)), 128), 262144)
    pages_min = min_free_kb >> 2
    ratio = {"DMA": 256, "DMA32": 256, "Normal": 32}       # sysctl_lowmem_reserve_ratio
    zones = []
    for i, (name, s, e) in enumerate(spans):
        m = managed[name]
        wmin = pages_min * m // lowmem_pages
        step = max(wmin >> 2, m * 10 // 10000)              # watermark_scale_factor 10
        # setup_per_zone_lowmem_reserve: pages kept from allocations that could use higher zones
        above = [managed.get(n, 0) for n in ("DMA", "DMA32", "Normal", "Movable", "Device")]
        idx = ("DMA", "DMA32", "Normal").index(name)
        reserve = tuple(sum(above[idx + 1:j + 1]) // ratio[name] if j > idx else 0 for j in range(5))
        batch = _batch(m)
        high = max((wmin + step) // smp, batch << 2)        # zone_highsize
        zones.append(Zone(node=0, name=name, start_pfn=s, spanned=e - s, spec=spec,
                          wmark_min=wmin, wmark_low=wmin + step, wmark_high=wmin + 2 * step,
                          lowmem_reserve=reserve,
                          pcp_high=high if pcp else 0, pcp_batch=batch if pcp else 0))
    if reserved_mib is None:
        reserved_mib = 48 + memory_mib / 64                  # kernel image, initramfs, memmap (~1.6%)
    reserved = int(reserved_mib * MIB_PAGES)
    for z in zones:
        start = z.start
        if z.name == "DMA":
            start = 256                                       # BIOS area below 1 MiB stays out
        elif z.name == "DMA32":
            start = z.start + min(reserved, z.end - z.start)
        if z.end > start:
            z.free_range(start, z.end - start, via_pcp=False)
    return Machine(zones, spec)


def mixed_trace(n_ops: int, memory_mib: int, *, seed: int = 2, fragment: float = 0.01,
                duration_s: float = 600.0) -> list:
    """A random workload of n_ops ops over duration_s (the model benchmark's, and a pinned test's):
    Register, then touches of 1-64 pages, frees of a random live tag (35%, and whenever the live
    set passes half of the RAM above 4 GiB), THP touches (5%) and fragmenting frees (keep every
    other page) of a live tag (`fragment`, 1% by default)."""
    rng = random.Random(seed)
    ops, live, live_pages = [Register(0.0)], [], 0
    cap = (memory_mib - 4096) * MIB_PAGES // 2
    for i in range(n_ops - 1):
        t = 1.0 + duration_s * i / n_ops
        r = rng.random()
        if live and (r < 0.35 or live_pages > cap):
            j = rng.randrange(len(live))
            live[j], live[-1] = live[-1], live[j]      # O(1) removal of a random live tag
            tag, pages = live.pop()
            live_pages -= pages
            ops.append(Free(t, tag))
        elif live and r < 0.35 + fragment:
            tag, pages = live[rng.randrange(len(live))]
            ops.append(Fragment(t, tag, keep_every=2))
        elif r < 0.40 + fragment:
            live.append((f"t{i}", 512))
            live_pages += 512
            ops.append(Touch(t, f"t{i}", 512, thp=True))
        else:
            n = rng.randint(1, 64)
            live.append((f"t{i}", n))
            live_pages += n
            ops.append(Touch(t, f"t{i}", n))
    return ops
