"""touch-free: touch N MiB in the guest, hold it, free it; measure what the host gets back.

Timeline (host monotonic clock, all waits are conditions with deadlines):
  boot -> idle RSS stable -> touch -> peak -> snapshot(held) -> free
  -> snapshot(freed) -> RSS stable again -> result (then harness.prediction adds the model)
"""
from __future__ import annotations

import time

from .. import guestfacts, hostmem, procfs
from ..guest import Guest

# Stability: RSS counts as settled when it moved less than STABLE_EPS_MIB over
# STABLE_WINDOW_S. The window must exceed the kernel's 2 s reporting delay
# (mm/page_reporting.c PAGE_REPORTING_DELAY) plus one pass, or the flat stretch
# between two passes would pass for the end.
STABLE_WINDOW_S = 5.0
STABLE_EPS_MIB = 4.0
SETTLE_TIMEOUT_S = 120.0


def run(guest: Guest, mib: int = 1024, progress=lambda m: None) -> dict:
    g = guest
    facts = {
        "reporting_negotiated": guestfacts.reporting_negotiated(g),
        "reporting_order": guestfacts.reporting_order(g),
    }
    ram_hva = g.ram_hva(0)
    with hostmem.Sampler(g.pid, ram_hva) as s:
        progress("waiting for the idle guest's RSS to settle")
        t_idle = time.monotonic()
        s.wait_for(hostmem.stable_for(STABLE_WINDOW_S, STABLE_EPS_MIB, t_idle), SETTLE_TIMEOUT_S, "idle RSS to settle")
        idle = s.since(time.monotonic() - STABLE_WINDOW_S)
        noise = max(x.rss_mib for x in idle) - min(x.rss_mib for x in idle)
        before = s.latest()

        wl = g.ssh.start("e2emem")
        try:
            progress(f"touching {mib} MiB in the guest")
            wl.ask(f"touch a {mib}")
            t_touched = time.monotonic()
            peak = s.wait_for(lambda xs: xs[-1].t > t_touched, 10, "a sample after the touch")
            held = guestfacts.snapshot_texts(g)
            progress(f"freeing {mib} MiB")
            t_free = time.monotonic()
            wl.ask("free a")
            freed = guestfacts.snapshot_texts(g)
        finally:
            wl.close()
        progress("waiting for RSS to settle after the free")
        after = s.wait_for(hostmem.stable_for(STABLE_WINDOW_S, STABLE_EPS_MIB, t_free), SETTLE_TIMEOUT_S,
                           "RSS to settle after the free")
        samples = s.since(t_idle)
    g.check_healthy()

    # With no reporting driver registered the parameter reads MAX_ORDER (6.1)
    # or -1 (6.12); the yardstick then uses the order registration would pick,
    # pageblock_order (9 on x86_64; mm/page_reporting.c page_reporting_register).
    order = facts["reporting_order"] if 0 <= facts["reporting_order"] <= 10 else 9
    reportable = (procfs.free_mib_at_or_above(procfs.parse_buddyinfo(freed["buddyinfo"]), order)
                  - procfs.free_mib_at_or_above(procfs.parse_buddyinfo(held["buddyinfo"]), order))
    drop = peak.rss_mib - after.rss_mib
    return {
        "scenario": "touch-free",
        "accel": g.cfg.accel,
        "kernel": g.image.kernel_release,
        "qemu": g.qemu.version,
        "memory_mib": g.cfg.memory_mib,
        "smp": g.cfg.smp,
        "reporting": g.cfg.reporting,
        **facts,
        "freed_mib": mib,
        "rss_before_mib": round(before.rss_mib, 1),
        "rss_peak_mib": round(peak.rss_mib, 1),
        "rss_after_mib": round(after.rss_mib, 1),
        "drop_mib": round(drop, 1),
        "ram_rss_before_mib": round(before.ram_rss_mib, 1),
        "ram_rss_peak_mib": round(peak.ram_rss_mib, 1),
        "ram_rss_after_mib": round(after.ram_rss_mib, 1),
        "ram_drop_mib": round(peak.ram_rss_mib - after.ram_rss_mib, 1),
        "reportable_mib": round(reportable, 1),
        "reportable_order": order,
        "idle_noise_mib": round(noise, 1),
        "seconds_to_90pct": _time_to_fraction(samples, t_free, peak.rss_mib, drop, 0.9),
        "boot_s": round(g.boot_s, 2),
        "backend": g.cfg.backend,
        "samples": [[round(x.t - t_free, 2), round(x.rss_mib, 1), round(x.ram_rss_mib, 1)] for x in samples],
        "snapshots": {"held": held, "freed": freed},
    }


def _time_to_fraction(samples, t_free, peak, drop, frac):
    """Seconds from the free until RSS first fell by frac * drop; None if nothing dropped."""
    if drop <= STABLE_EPS_MIB:
        return None
    for x in samples:
        if x.t >= t_free and peak - x.rss_mib >= frac * drop:
            return round(x.t - t_free, 2)
    return None
