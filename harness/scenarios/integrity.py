"""integrity: data that stays allocated survives reporting cycles around it, bit for bit.

The workload fills KEEP MiB with a checksummed pattern (a different value per
page), then churns CHURN MiB through `cycles` touch/free cycles, each one
measured as a phase and so reported and discarded on the host before the next.
Then every kept page is verified (0 mismatches required), and CHURN MiB is
faulted in without being written: pages reported, discarded and reallocated
must reach the program zeroed.
"""
from __future__ import annotations

import re

from harness.scenarios.common import measuring


def _field(reply: str, key: str) -> int:
    m = re.search(rf"\b{key}=(\d+)", reply)
    if not m:
        raise ValueError(f"no {key}= in workload reply {reply!r}")
    return int(m.group(1))


def run(guest, keep_mib: int = 256, churn_mib: int = 512, cycles: int = 10) -> dict:
    with measuring(guest) as r:
        r.ask(f"fill keep {keep_mib} 20261123")
        for i in range(cycles):
            r.ask(f"touch churn {churn_mib}")
            r.release(f"cycle-{i + 1}", lambda: r.ask("free churn"), churn_mib, unmaps="churn")
        verify = r.ask("verify keep")
        zero = r.ask(f"alloc z {churn_mib}")
        zc = r.ask("zerocheck z")
        return r.result("integrity", freed_mib=churn_mib, keep_mib=keep_mib, cycles=cycles,
                        verified_pages=_field(verify, "pages"), mismatched_pages=_field(verify, "bad"),
                        zero_checked_pages=_field(zc, "pages"), nonzero_pages=_field(zc, "nonzero"),
                        alloc_reply=zero, idle_noise_mib=round(r.idle_noise, 1))
