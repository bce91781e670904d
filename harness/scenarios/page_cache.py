"""page-cache: file data cached in the guest, dropped with drop_caches, is reported.

The guest reads N MiB of its virtio-blk disk (a sparse raw file in the run
directory) through the page cache; the device writes every cached page, so
all of them are resident on the host. `echo 1 > /proc/sys/vm/drop_caches`
frees them to the buddy allocator: a release like any other, predicted by the
model from the guest's own snapshots and blocks. A process holds the device
open throughout: the last close of a block device drops its page cache by
itself (block/bdev.c blkdev_put -> kill_bdev), which would release the data
before the measurement (seen: Buffers 0 kB right after dd).
"""
from __future__ import annotations

import logging

import re

from harness.scenarios.common import WORKLOAD_CPU, measuring, pfn_runs

log = logging.getLogger(__name__)

DISK = "/dev/vda"


def run(guest, mib: int = 512) -> dict:
    g = guest
    with measuring(g) as r:
        before = r.idle
        holder = g.ssh.start(f"exec sleep 100000 <{DISK}")
        log.info(f"reading {mib} MiB of {DISK} into the guest's page cache")
        g.run(f"dd if={DISK} of=/dev/null bs=1M count={int(mib)} 2>/dev/null")
        cached_kb = int(re.search(r"Buffers:\s+(\d+)", g.run("cat /proc/meminfo").stdout).group(1))
        # pinned like the workload: the pages go onto the per-cpu lists the model reads
        r.release("drop-caches", lambda: g.run(f"taskset -c {WORKLOAD_CPU if g.cfg.smp > 1 else 0} "
                                                "sh -c 'sync; echo 1 > /proc/sys/vm/drop_caches'"),
                  cached_kb / 1024, frees=lambda: pfn_runs(g.run("e2epfn cache").stdout))
        holder.chan.close()
        return r.result("page-cache", freed_mib=round(cached_kb / 1024, 1), cached_mib=round(cached_kb / 1024, 1),
                        rss_before_mib=round(before.rss_mib, 1), idle_noise_mib=round(r.idle_noise, 1))
