"""Pure parsers of guest /proc and /sys files.

Each takes the file's text and returns plain data; a malformed file raises
ProcParseError with the offending line, never an IndexError deep inside.
"""
from __future__ import annotations

from dataclasses import dataclass

PAGE_SIZE = 4096
MIB = 1 << 20


class ProcParseError(ValueError):
    pass


@dataclass(frozen=True)
class BuddyZone:
    node: int
    zone: str
    free: tuple[int, ...]  # free blocks per order, index = order

    def pages_at_or_above(self, order: int) -> int:
        return sum(n << o for o, n in enumerate(self.free) if o >= order)


def parse_buddyinfo(text: str) -> list[BuddyZone]:
    """/proc/buddyinfo: 'Node 0, zone   DMA32    3 4 ... ' (mm/vmstat.c frag_show_print)."""
    zones = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.replace(",", " ").split()
        try:
            if parts[0] != "Node" or parts[2] != "zone" or len(parts) < 5:
                raise ValueError
            zones.append(BuddyZone(int(parts[1]), parts[3], tuple(int(x) for x in parts[4:])))
        except (ValueError, IndexError):
            raise ProcParseError(f"buddyinfo: cannot parse line {line!r}") from None
    if not zones:
        raise ProcParseError("buddyinfo: no zones")
    return zones


def free_mib_at_or_above(zones: list[BuddyZone], order: int) -> float:
    """Free memory in blocks of order >= `order`, all zones, in MiB."""
    return sum(z.pages_at_or_above(order) for z in zones) * PAGE_SIZE / MIB


def parse_virtio_features(text: str) -> str:
    """/sys/bus/virtio/devices/*/features: a string of '0'/'1', bit 0 first."""
    bits = text.strip()
    if not bits or set(bits) - {"0", "1"}:
        raise ProcParseError(f"virtio features: not a bit string: {text[:80]!r}")
    return bits


def feature_bit(bits: str, n: int) -> bool:
    return len(bits) > n and bits[n] == "1"


# include/uapi/linux/virtio_balloon.h
VIRTIO_BALLOON_F_STATS_VQ = 1
VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3
VIRTIO_BALLOON_F_PAGE_POISON = 4
VIRTIO_BALLOON_F_REPORTING = 5
VIRTIO_ID_BALLOON = 5


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo -> {key: kB (or a count for the HugePages_* lines)}."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields:
            raise ProcParseError(f"meminfo: cannot parse line {line!r}")
        try:
            out[key.strip()] = int(fields[0])
        except ValueError:
            raise ProcParseError(f"meminfo: cannot parse line {line!r}") from None
    return out


def slab_cache_pages(text: str, name: str) -> int | None:
    """/proc/slabinfo (version 2.1) -> the pages a cache's slabs hold: num_slabs x pagesperslab
    (mm/slab_common.c cache_show). 0 where the cache is not listed; None where the text is no
    slabinfo (a kernel without it, SLUB without CONFIG_SLUB_DEBUG: the snapshot's cat failed)."""
    if not text.startswith("slabinfo - version: 2."):
        return None
    for line in text.splitlines():
        f = line.split()
        if f and f[0] == name:
            try:
                # name active_objs num_objs objsize objperslab pagesperslab : tunables l b s : slabdata act num sh
                return int(f[f.index("slabdata") + 2]) * int(f[5])
            except (ValueError, IndexError):
                raise ProcParseError(f"slabinfo: cannot parse line {line!r}") from None
    return 0
