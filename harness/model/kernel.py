"""Which kernel: the handful of facts that differ between 6.1 and 6.12."""
from __future__ import annotations

import re
from dataclasses import dataclass

from harness.model.errors import ModelError


def kernel_version(release: str) -> tuple[int, int]:
    """'6.1', '6.1.0-28-amd64', '6.12.95+deb13' -> (6, 1) / (6, 12)."""
    m = re.match(r"\s*(\d+)\.(\d+)", str(release))
    if not m:
        raise ModelError(f"cannot read a kernel version from {release!r}")
    return int(m[1]), int(m[2])


def kernel_sublevel(release: str) -> int | None:
    """'6.12.117+deb13-amd64' -> 117; None where the release names none."""
    m = re.match(r"\s*\d+\.\d+\.(\d+)", str(release))
    return int(m[1]) if m else None


@dataclass(frozen=True)
class KernelSpec:
    version: tuple[int, int]
    # 6.1 include/linux/mmzone.h MAX_ORDER 11 (exclusive: orders 0..10);
    # 6.12 MAX_PAGE_ORDER 10 (inclusive), NR_PAGE_ORDERS 11. Same orders either way.
    nr_orders: int = 11
    # include/linux/pageblock-flags.h: pageblock_order = HUGETLB_PAGE_ORDER = 9 on x86_64
    pageblock_order: int = 9
    # 6.12 decay_pcp_high drains count - high in calls of free_pcppages_bulk(batch) and counts
    # batch per call, so a call that reaches the THP list frees 512 pages for 63: Debian's
    # 6.12.117 (ftrace: 12 and 21 calls of 63 in two steps, 19 THPs in the second), not 6.12.57
    # (its source: one call). Which release between brought it is not known here.
    batched_decay: bool = False

    @property
    def max_order(self) -> int:
        return self.nr_orders - 1


def kernel_spec(release: str, pageblock_order: int = 9, nr_orders: int = 11) -> KernelSpec:
    v = kernel_version(release)
    if v < (5, 7):
        raise ModelError(f"kernel {release}: free page reporting appeared in 5.7")
    if not 0 < pageblock_order < nr_orders:
        raise ModelError(f"pageblock order {pageblock_order} outside 1..{nr_orders - 1}")
    sub = kernel_sublevel(release)
    return KernelSpec(v, nr_orders, pageblock_order,
                      batched_decay=v == (6, 12) and sub is not None and sub > 57)


def effective_reporting_order(release: str, *, pageblock_order: int = 9, boot_param: int | None = None,
                              sysfs_after_load: int | None = None, driver_order: int = 0,
                              nr_orders: int = 11) -> int:
    """The order page reporting will use, from how it was configured.

    6.1 mm/page_reporting.c page_reporting_register: `page_reporting_order =
    prdev->order ? : pageblock_order` unconditionally, so a boot-time
    page_reporting.page_reporting_order= is overwritten; only a sysfs write
    after the driver registered sticks (a plain uint param, not range-checked).
    6.2+ (6.12) page_reporting_register keeps a value set before registration
    (`if (page_reporting_order == -1)`), and page_order_update_notify rejects
    values outside 0..MAX_PAGE_ORDER (param_set_uint_minmax).
    virtio_balloon sets prdev->order only on arm64 with 64K pages, so x86 passes 0.
    """
    max_order = nr_orders - 1
    v = kernel_version(release)
    if v < (6, 2):
        order = driver_order or pageblock_order
        if sysfs_after_load is not None:
            order = sysfs_after_load
        return order
    order = boot_param if boot_param is not None and 0 <= boot_param <= max_order else -1
    if order == -1:
        order = driver_order if 0 < driver_order <= max_order else pageblock_order
    if sysfs_after_load is not None and 0 <= sysfs_after_load <= max_order:
        order = sysfs_after_load
    return order
