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


_FEATURES_CMD = "for d in /sys/bus/virtio/devices/*; do echo $(cat $d/device) $(cat $d/features); done"


def features_of(out: str) -> str:
    """Pure: _FEATURES_CMD's output -> the feature bits of the virtio-balloon device (id 5)."""
    for line in out.splitlines():
        dev, _, bits = line.partition(" ")
        if int(dev, 16) == procfs.VIRTIO_ID_BALLOON:
            return procfs.parse_virtio_features(bits)
    raise GuestError("no virtio-balloon device in the guest")


def balloon_features(guest) -> str:
    """Feature bits of the virtio-balloon device (virtio device id 5)."""
    return features_of(guest.run(_FEATURES_CMD).stdout)


def start_facts(guest) -> tuple[bool, int, str]:
    """What a measured run reads first, in one SSH round trip: whether reporting was negotiated,
    page_reporting_order as sysfs shows it, and /proc/iomem (pagemap.layout)."""
    out = guest.run(f"echo '{_SEP}features'; {_FEATURES_CMD}; echo '{_SEP}order'; cat {ORDER_PARAM}; "
                    f"echo '{_SEP}iomem'; cat /proc/iomem").stdout
    texts = split_sections(out)
    return (procfs.feature_bit(features_of(texts["features"]), procfs.VIRTIO_BALLOON_F_REPORTING),
            int(texts["order"]), texts["iomem"])


def reporting_order(guest) -> int:
    """Effective page_reporting_order; 6.1 reads MAX_ORDER (11) and 6.12 -1 until a driver registers."""
    return int(guest.run(f"cat {ORDER_PARAM}").stdout)


SNAPSHOT_FILES = {
    "buddyinfo": "/proc/buddyinfo",
    "zoneinfo": "/proc/zoneinfo",
    "pagetypeinfo": "/proc/pagetypeinfo",
    "vmstat": "/proc/vmstat",
    "meminfo": "/proc/meminfo",
    # the page cache's xarray nodes (radix_tree_node), which a drop_caches frees with the pages
    "slabinfo": "/proc/slabinfo",
    "page_reporting_order": ORDER_PARAM,
    "kernel_release": "/proc/sys/kernel/osrelease",
}
_SEP = "----e2e-snapshot:"


def snapshot_texts(guest) -> dict[str, str]:
    """The guest's memory files, read in one SSH round trip (close together in time)."""
    cmd = "; ".join(f"echo '{_SEP}{name}'; cat {path}" for name, path in SNAPSHOT_FILES.items())
    return split_snapshot(guest.run(cmd).stdout)


def split_snapshot(out: str) -> dict[str, str]:
    texts = split_sections(out)
    missing = set(SNAPSHOT_FILES) - set(texts)
    if missing:
        raise GuestError(f"snapshot lacks {', '.join(sorted(missing))}")
    return texts


def split_sections(out: str) -> dict[str, str]:
    """Pure: output of commands each preceded by `echo '<_SEP>name'` -> {name: its output}."""
    texts: dict[str, str] = {}
    name = None
    for line in out.splitlines(keepends=True):
        if line.startswith(_SEP):
            name = line[len(_SEP):].strip()
            texts[name] = ""
        elif name is not None:
            texts[name] += line
    return texts
