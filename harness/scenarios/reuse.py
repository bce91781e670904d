"""reuse: free and let it be reported, touch the same amount again, free it again.

The second touch must bring RSS back up by what it touched (the discarded
pages fault in anew on the host) and the second free must be reported again.
"""
from __future__ import annotations

import logging

import time

from harness.scenarios.common import measuring

log = logging.getLogger(__name__)


def run(guest, mib: int = 1024) -> dict:
    with measuring(guest) as r:
        before = r.idle
        r.ask(f"touch a {mib}")
        r.release("free", lambda: r.ask("free a"), mib, unmaps="a")
        low = r.s.latest()
        log.info(f"touching {mib} MiB again")
        r.ask(f"touch a {mib}")
        t = time.monotonic()
        again = r.s.wait_for(lambda xs: xs[-1].t > t, 10, "a sample after the second touch")
        r.release("free-again", lambda: r.ask("free a"), mib, unmaps="a")
        return r.result("reuse", freed_mib=mib, rss_before_mib=round(before.rss_mib, 1),
                        retouch_rise_mib=round(again.rss_mib - low.rss_mib, 1),
                        idle_noise_mib=round(r.idle_noise, 1))
