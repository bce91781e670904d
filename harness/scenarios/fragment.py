"""fragment: leave free memory only in blocks below the reporting order, then free the rest.

Phase "punch": the workload unmaps every other 1 MiB of a buffer faulted with
4 KiB pages (MADV_NOHUGEPAGE). Half the buffer returns to the guest, but each
freed 1 MiB is contiguous in the buffer, not in guest-physical memory, so it
lands in blocks below order 9 and nothing is reported (measured). Phase
"free-rest": the other half goes too; the blocks merge and are reported. The
model predicts both from the guest's own snapshots, not from the buffer's
virtual layout. With guest THP (no `nohuge`), the punch frees nothing at all
to the buddy lists: split huge pages wait on the deferred-split queue.
"""
from __future__ import annotations

import logging

from harness.scenarios.common import measuring

log = logging.getLogger(__name__)

CHUNK_KIB = 1024


def run(guest, mib: int = 1024, thp: bool = False) -> dict:
    with measuring(guest) as r:
        before = r.idle
        log.info(f"touching {mib} MiB in the guest ({'huge' if thp else '4 KiB'} pages)")
        r.ask(f"touch a {mib}" + ("" if thp else " nohuge"))
        r.release("punch", lambda: r.ask(f"punch a {CHUNK_KIB} {CHUNK_KIB}"), mib / 2,
                  unmaps=f"a {CHUNK_KIB} {CHUNK_KIB}")
        r.release("free-rest", lambda: r.ask("free a"), mib / 2, carries_unreported=True, unmaps="a")
        return r.result("fragment", freed_mib=mib, guest_thp=thp, rss_before_mib=round(before.rss_mib, 1),
                        ram_rss_before_mib=round(before.ram_rss_mib, 1), idle_noise_mib=round(r.idle_noise, 1))
