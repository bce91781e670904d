"""Facts read from inside a running guest over SSH (parsing lives in procfs.py)."""
from __future__ import annotations

from harness.measure import procfs
from harness.errors import GuestError

ORDER_PARAM = "/sys/module/page_reporting/parameters/page_reporting_order"
PAGEBLOCK_ORDER = 9  # x86_64 with HUGETLB_PAGE (include/linux/pageblock-flags.h)


def effective_order(sysfs_order: int) -> int:
    """Pure: the order reporting works at. With no reporting driver registered sysfs reads
    MAX_ORDER (6.1) or -1 (6.12); then the order registration would pick
    (mm/page_reporting.c page_reporting_register), pageblock_order."""
    return sysfs_order if 0 <= sysfs_order <= 10 else PAGEBLOCK_ORDER


def balloon_features(guest) -> str:
    """Feature bits of the virtio-balloon device (virtio device id 5)."""
    out = guest.run("for d in /sys/bus/virtio/devices/*; do echo $(cat $d/device) $(cat $d/features); done").stdout
    for line in out.splitlines():
        dev, _, bits = line.partition(" ")
        if int(dev, 16) == procfs.VIRTIO_ID_BALLOON:
            return procfs.parse_virtio_features(bits)
    raise GuestError("no virtio-balloon device in the guest")


def reporting_negotiated(guest) -> bool:
    return procfs.feature_bit(balloon_features(guest), procfs.VIRTIO_BALLOON_F_REPORTING)


def reporting_order(guest) -> int:
    """Effective page_reporting_order; 6.1 reads MAX_ORDER (11) and 6.12 -1 until a driver registers."""
    return int(guest.run(f"cat {ORDER_PARAM}").stdout)


SNAPSHOT_FILES = {
    "buddyinfo": "/proc/buddyinfo",
    "zoneinfo": "/proc/zoneinfo",
    "pagetypeinfo": "/proc/pagetypeinfo",
    "vmstat": "/proc/vmstat",
    "meminfo": "/proc/meminfo",
    "page_reporting_order": ORDER_PARAM,
    "kernel_release": "/proc/sys/kernel/osrelease",
}
_SEP = "----e2e-snapshot:"


def snapshot_texts(guest) -> dict[str, str]:
    """The guest's memory files, read in one SSH round trip (close together in time)."""
    cmd = "; ".join(f"echo '{_SEP}{name}'; cat {path}" for name, path in SNAPSHOT_FILES.items())
    return split_snapshot(guest.run(cmd).stdout)


def split_snapshot(out: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    name = None
    for line in out.splitlines(keepends=True):
        if line.startswith(_SEP):
            name = line[len(_SEP):].strip()
            texts[name] = ""
        elif name is not None:
            texts[name] += line
    missing = set(SNAPSHOT_FILES) - set(texts)
    if missing:
        raise GuestError(f"snapshot lacks {', '.join(sorted(missing))}")
    return texts
