"""touch-free: touch N MiB in the guest, hold it, free it; measure what the host gets back."""
from __future__ import annotations

from .common import measuring


def run(guest, mib: int = 1024, progress=lambda m: None) -> dict:
    with measuring(guest, progress) as r:
        before = r.idle
        progress(f"touching {mib} MiB in the guest")
        r.ask(f"touch a {mib}")
        r.release("free", lambda: r.ask("free a"), mib, unmaps="a")
        return r.result("touch-free", freed_mib=mib, rss_before_mib=round(before.rss_mib, 1),
                        ram_rss_before_mib=round(before.ram_rss_mib, 1), idle_noise_mib=round(r.idle_noise, 1))
