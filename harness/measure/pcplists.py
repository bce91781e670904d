"""Which pages sit on which per-cpu list: the guest's `struct per_cpu_pages`, read through
/proc/kcore by the capture itself (e2epfn --pcp), right after its kpageflags scan in the
same command.

/proc/zoneinfo gives each list's count only; a page on a per-cpu list carries no kpageflags
flag, like many a kernel page, so the scan alone cannot tell which CPU's list, which
migratetype or which order holds a flagless page. The kernel's own type information (BTF)
gives the layout of its structures and /proc/kallsyms where they are, so no debug package is
needed and each kernel is read as it is built.

The addresses are worked out once per guest boot (`locate`, three guest commands, the BTF
cached on the host by kernel build); a capture then walks the lists in one pass.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from harness import paths
from harness.measure import btf as btfmod
from harness.measure import procfs
from harness.measure.snapshot import parse_zoneinfo, zone_label
from harness.model.release import pages_on_lists

SYMBOLS = ("node_data", "contig_page_data", "__per_cpu_offset", "vmemmap_base")


class PcpReadError(RuntimeError):
    pass


@dataclass(frozen=True)
class Layout:
    """Offsets and sizes from the kernel's BTF."""
    page_size: int                      # sizeof(struct page)
    link: int                           # offsetof(struct page, pcp_list) (lru before 5.19)
    count: int                          # offsetof(struct per_cpu_pages, count)
    lists: int                          # offsetof(struct per_cpu_pages, lists)
    nlists: int                         # NR_PCP_LISTS
    node_zones: int                     # offsetof(struct pglist_data, node_zones)
    zone_size: int                      # sizeof(struct zone)
    zone_pcp: int                       # offsetof(struct zone, per_cpu_pageset)
    zone_index: tuple[tuple[str, int], ...]   # enum zone_type: ("ZONE_NORMAL", 2), ...

    def zone(self, name: str) -> int:
        """zoneinfo's zone name ("DMA32", "Normal") -> its index in pglist_data.node_zones."""
        return dict(self.zone_index)["ZONE_" + name.upper()]


def layout(b: btfmod.Btf) -> Layout:
    """Pure: the offsets the walk needs, from a kernel's BTF."""
    link = "pcp_list" if b.has_member("page", "pcp_list") else "lru"
    return Layout(
        page_size=b.size(b.struct("page")), link=b.offset("page", link),
        count=b.offset("per_cpu_pages", "count"), lists=b.offset("per_cpu_pages", "lists"),
        nlists=b.array_len("per_cpu_pages", "lists"),
        node_zones=b.offset("pglist_data", "node_zones"), zone_size=b.size(b.struct("zone")),
        zone_pcp=b.offset("zone", "per_cpu_pageset"),
        zone_index=tuple(b.enum("zone_type").items()))


def parse_kallsyms(text: str) -> dict[str, int]:
    """Pure: `ADDR TYPE NAME` lines -> the SYMBOLS' addresses."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] in SYMBOLS:
            out[parts[2]] = int(parts[0], 16)
    if "__per_cpu_offset" not in out or "vmemmap_base" not in out or not (
            "node_data" in out or "contig_page_data" in out):
        raise PcpReadError(f"/proc/kallsyms: missing symbols (have {sorted(out)})")
    if not all(out.values()):
        raise PcpReadError("/proc/kallsyms: addresses hidden (kptr_restrict)")
    return out


def parse_peek(text: str) -> list[bytes]:
    """Pure: `e2epfn peek` output -> the bytes read, in order."""
    try:
        return [bytes.fromhex(line.split()[1]) for line in text.splitlines() if line.strip()]
    except (IndexError, ValueError):
        raise PcpReadError(f"e2epfn peek: unexpected output {text[:80]!r}") from None


def _u64(b: bytes) -> int:
    return int.from_bytes(b[:8], "little")


@dataclass(frozen=True)
class Targets:
    """The capture's `--pcp` arguments: the walk's offsets and every list set's address."""
    layout: Layout
    vmemmap: int
    pcps: tuple[tuple[str, int], ...]       # ("Normal@node1/1", address of that per_cpu_pages)

    def argv(self) -> str:
        lay = self.layout
        return " ".join(["--pcp", hex(self.vmemmap), str(lay.page_size), str(lay.link), str(lay.count),
                         str(lay.lists), str(lay.nlists)] + [f"{n}={a:#x}" for n, a in self.pcps])


def _run(guest, cmd: str, timeout: float = 60) -> str:
    """A guest command of the lookup; its failure (no BTF, kcore locked down, a symbol
    missing) is a PcpReadError: the captures go on without the walk."""
    r = guest.run(cmd, check=False, timeout=timeout)
    if r.status != 0:
        raise PcpReadError(f"{cmd.split()[0]} exited {r.status}: {r.stderr.strip()[-200:]}")
    return r.stdout


def _btf(guest) -> btfmod.Btf:
    """The guest kernel's BTF, cached on the host by the kernel's build string."""
    version = _run(guest, "cat /proc/version").strip()
    path = paths.cache_dir() / "btf" / (hashlib.sha256(version.encode()).hexdigest()[:16] + ".btf")
    if not path.exists():
        data = base64.b64decode(_run(guest, "base64 /sys/kernel/btf/vmlinux", timeout=300))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return btfmod.parse(path.read_bytes())


def locate(guest, zoneinfo: str) -> Targets:
    """Where every populated zone's per-cpu list set is on this boot (KASLR moves them)."""
    lay = layout(_btf(guest))
    syms = parse_kallsyms(_run(guest, "grep -wE '" + "|".join(SYMBOLS) + "' /proc/kallsyms"))
    zones = [(z.node, z.zone, tuple(p.cpu for p in z.pagesets))
             for z in parse_zoneinfo(zoneinfo) if z.start_pfn is not None and z.pagesets]
    nodes = sorted({n for n, _, _ in zones})
    cpus = sorted({c for _, _, cs in zones for c in cs})
    asks = [(syms["vmemmap_base"], 8)] + [(syms["__per_cpu_offset"] + 8 * c, 8) for c in cpus]
    if "node_data" in syms:
        asks += [(syms["node_data"] + 8 * n, 8) for n in nodes]
    got = parse_peek(_run(guest, "e2epfn peek " + " ".join(f"{a:#x} {n}" for a, n in asks)))
    vmemmap, offsets = _u64(got[0]), dict(zip(cpus, map(_u64, got[1:1 + len(cpus)])))
    pgdat = (dict(zip(nodes, map(_u64, got[1 + len(cpus):]))) if "node_data" in syms
             else {0: syms["contig_page_data"]})
    zone_addr = {(n, name): pgdat[n] + lay.node_zones + lay.zone(name) * lay.zone_size for n, name, _ in zones}
    asks = [(zone_addr[(n, name)] + lay.zone_pcp, 8) for n, name, _ in zones]
    got = parse_peek(_run(guest, "e2epfn peek " + " ".join(f"{a:#x} {k}" for a, k in asks)))
    pcps = []
    for (n, name, cs), ptr in zip(zones, map(_u64, got)):
        pcps += [(f"{zone_label(n, name)}/{c}", ptr + offsets[c]) for c in cs]
    return Targets(lay, vmemmap, tuple(pcps))


@dataclass(frozen=True)
class PcpRead:
    """One CPU's list set of one zone, as the capture walked it."""
    zone: str                               # the captures' zone label
    cpu: int
    count: int                              # pcp->count, read just before its lists
    lists: tuple[tuple[int, ...], ...]      # per list index: the pages' pfns, newest first (as walked)
    broken: tuple[int, ...] = ()            # list indices the walk gave up on

    def pages(self) -> int:
        return pages_on_lists(self.lists)


def parse_section(lines: list[str]) -> tuple[PcpRead, ...]:
    """Pure: e2epfn's `== pcp` section -> one PcpRead per list set, in the order walked."""
    counts: dict[str, int] = {}
    lists: dict[str, dict[int, tuple[int, ...]]] = {}
    broken: dict[str, list[int]] = {}
    if lines[:1] == ["E /proc/kcore"]:                  # kcore not readable (lockdown): no walk
        return ()
    try:
        for line in lines:
            kind, name, *rest = line.split()
            if kind == "C":
                counts[name] = int(rest[0])
                lists[name], broken[name] = {}, []
            elif kind == "L":
                lists[name][int(rest[0])] = tuple(map(int, rest[1:]))
            elif kind == "X":
                broken[name].append(int(rest[0]))
            else:
                raise ValueError(kind)
    except (ValueError, KeyError, IndexError) as e:
        raise procfs.ProcParseError(f"e2epfn pcp: malformed line ({e})") from None
    out = []
    for name, count in counts.items():
        zone, _, cpu = name.rpartition("/")
        n = max(lists[name], default=-1) + 1
        out.append(PcpRead(zone, int(cpu), count, tuple(lists[name].get(i, ()) for i in range(n)),
                           tuple(broken[name])))
    return tuple(out)
