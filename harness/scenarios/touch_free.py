"""touch-free: touch N MiB in the guest, hold it, free it; measure what the host gets back."""
from __future__ import annotations

import logging

from harness.scenarios.common import measuring

log = logging.getLogger(__name__)


def run(guest, mib: int = 1024) -> dict:
    with measuring(guest) as r:
        before = r.idle
        log.info(f"touching {mib} MiB in the guest")
        r.ask(f"touch a {mib}")
        r.release("free", lambda: r.ask("free a"), mib, unmaps="a")
        return r.result("touch-free", freed_mib=mib, rss_before_mib=round(before.rss_mib, 1),
                        ram_rss_before_mib=round(before.ram_rss_mib, 1), idle_noise_mib=round(r.idle_noise, 1))
