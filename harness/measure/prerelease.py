"""What a phase read before its release: the model's only inputs (harness/verdict/prediction.py
turns this record into the model's own types). Kept in the result as the phase's `pre`."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

Runs = tuple[tuple[int, int, bool], ...]     # (first pfn, pages, part of a THP) in freeing order


def runs_of(xs) -> Runs:
    return tuple((int(r[0]), int(r[1]), bool(r[2]) if len(r) > 2 else False) for r in xs)


@dataclass(frozen=True)
class PreRecord:
    cpu: int                                # the CPU the release runs on (the workload's)
    kind: str                               # "munmap" (the workload's region) or "drop_caches"
    pcp_taken: bool                         # the workload allocated on its CPU since the last release
    mapped: Runs                            # the workload's mapped pages
    unmapped: Runs                          # of those, the ones the release frees, in its order
    capture: dict                           # the per-block capture (perblock.Capture.to_json)
    capture_vmstat: tuple[str, str]         # /proc/vmstat just before and after that capture
    read_at_s: dict[str, float]             # input -> seconds relative to the release (all <= 0)
    ours_cpu: int | None = None             # where our SSH commands and the interrupts run
    faults_after: int = 0                   # pages the workload faults in right after its unmap
    kept: Runs = ()                         # other pages known to stay allocated
    unheld_ask_none: bool = True            # a free block the host holds none of asks no pass
    waited_for: tuple = ()                  # per capture of the wait: [s into it, [[head, order, held]]]
    worker_wait_s: float = 0.0              # how long the release waited for a pass already due
    stuck: tuple[tuple[int, int], ...] = () # blocks left pending once passes were over
    qemu_own_growth_mib: float = 0.0        # QEMU's own memory, from the previous release (or the run's start) to this one
    activity: dict = field(default_factory=dict)   # the idle window's raw vmstat reads (Run.measuring)
    page_tables: int | None = None          # PTE tables the unmap frees after its pages (e2emem `pt`)
    # the release CPU's per-cpu lists read by the workload itself just before its unmap
    # (e2emem `free`: pcp=..., read_at_s["pcp"] from that read to the unmap): (node, zone,
    # count, high, batch). zoneinfo in the capture is ~0.1-0.3 s older, and on 6.12 a
    # decay_pcp_high step (high lowered by 1/8, once a second) can fall in between.
    pcp_at_release: tuple[tuple[int, str, int, int, int], ...] = ()
    # e2emem's `sync` (6.12) saw vmstat_update (its decay step) run just before the release,
    # and the unmap ended within SYNC_SAFE_MS of it: the next is further away, so none falls
    # inside the release
    decay_synced: bool = False
    # from the poll before the one where `sync` saw vmstat_update run to the unmap's end (ms;
    # None: no sync seen): decay_synced needs it under SYNC_SAFE_MS
    sync_age_ms: float | None = None
    # e2emem `free`/`punch`: the nodes its faults after the unmap were bound to (fnodes=, one
    # part of its area each; empty: unbound) and its CPU's node (node=)
    fault_nodes: tuple[int, ...] = ()
    cpu_node: int | None = None
    ours_node: int | None = None            # the node of ours_cpu (the guest's NUMA layout, GuestConfig.node_cpus)
    # the previous release's unmapped pages, in its order, where nothing was allocated since:
    # what of them the capture finds flagless is still on the release CPU's lists
    previous_unmapped: Runs = ()
    unmap_chunk: int = 0                    # pages per munmap of a punch (its GAP); 0: one munmap

    def to_json(self) -> dict:
        d = {"cpu": self.cpu, "kind": self.kind, "pcp_taken": self.pcp_taken, "ours_cpu": self.ours_cpu,
             "faults_after": self.faults_after, "mapped": [list(r) for r in self.mapped],
             "unmapped": [list(r) for r in self.unmapped], "unheld_ask_none": self.unheld_ask_none,
             "waited_for": list(self.waited_for), "worker_wait_s": self.worker_wait_s, "capture": self.capture,
             "capture_vmstat": list(self.capture_vmstat), "stuck": [list(x) for x in self.stuck],
             "read_at_s": dict(self.read_at_s), "qemu_own_growth_mib": self.qemu_own_growth_mib,
             "activity": self.activity}
        if self.kept:
            d["kept"] = [list(r) for r in self.kept]
        if self.page_tables is not None:
            d["page_tables"] = self.page_tables
        if self.pcp_at_release:
            d["pcp_at_release"] = [list(x) for x in self.pcp_at_release]
        if self.decay_synced:
            d["decay_synced"] = True
        if self.sync_age_ms is not None:
            d["sync_age_ms"] = self.sync_age_ms
        if self.fault_nodes:
            d["fault_nodes"] = list(self.fault_nodes)
        if self.cpu_node is not None:
            d["cpu_node"] = self.cpu_node
        if self.ours_node is not None:
            d["ours_node"] = self.ours_node
        if self.previous_unmapped:
            d["previous_unmapped"] = [list(r) for r in self.previous_unmapped]
        if self.unmap_chunk:
            d["unmap_chunk"] = self.unmap_chunk
        return d

    @classmethod
    def from_json(cls, d: dict) -> "PreRecord":
        """Results of every version this suite wrote with a `pre` record (fields added later
        take their defaults: what those runs did)."""
        return cls(cpu=d.get("cpu"), kind=d.get("kind", "munmap"), pcp_taken=bool(d.get("pcp_taken")),
                   mapped=runs_of(d.get("mapped", [])), unmapped=runs_of(d.get("unmapped", [])),
                   capture=d["capture"], capture_vmstat=tuple(d.get("capture_vmstat") or ("", "")),
                   read_at_s=dict(d.get("read_at_s", {})), ours_cpu=d.get("ours_cpu"),
                   faults_after=int(d.get("faults_after", 0)), kept=runs_of(d.get("kept", [])),
                   unheld_ask_none=bool(d.get("unheld_ask_none", True)), waited_for=tuple(d.get("waited_for", ())),
                   worker_wait_s=float(d.get("worker_wait_s", 0.0)),
                   stuck=tuple((int(h), int(o)) for h, o in d.get("stuck", [])),
                   qemu_own_growth_mib=float(d.get("qemu_own_growth_mib", 0.0)), activity=d.get("activity") or {},
                   page_tables=d.get("page_tables"),
                   pcp_at_release=tuple((int(a), str(z), int(c), int(h), int(b))
                                        for a, z, c, h, b in d.get("pcp_at_release", ())),
                   decay_synced=bool(d.get("decay_synced")), sync_age_ms=d.get("sync_age_ms"),
                   fault_nodes=tuple(int(n) for n in d.get("fault_nodes", ())), cpu_node=d.get("cpu_node"),
                   ours_node=d.get("ours_node"), previous_unmapped=runs_of(d.get("previous_unmapped", [])),
                   unmap_chunk=int(d.get("unmap_chunk", 0)))


def reply_value(reply: str, key: str) -> str | None:
    """Pure: the value of `key=VALUE` in a one-line reply (e2emem's, e2epfn's); None if absent."""
    m = re.search(rf"(?:^|\s){re.escape(key)}=(\S+)", reply)
    return m.group(1) if m else None


def reply_field(reply: str, key: str) -> int | None:
    """An integer `key=N` of a one-line reply; None if absent."""
    v = reply_value(reply, key)
    return int(v) if v is not None and v.isdigit() else None


def fault_nodes_field(reply: str) -> tuple[tuple[int, ...], int | None]:
    """Pure: e2emem's `free`/`punch` reply -> (the nodes its faults were bound to, its CPU's
    node); ((), None) where the reply has neither (one node, or an older e2emem)."""
    nodes = reply_value(reply, "fnodes")
    return (tuple(int(n) for n in nodes.split(",")) if nodes else ()), reply_field(reply, "node")


def pcp_field(reply: str) -> tuple[tuple[tuple[int, str, int, int, int], ...], float | None]:
    """Pure: e2emem's `free` reply -> ((node, zone, count, high, batch), ...) and seconds from
    that read to the unmap (None: the reply has no pcp= field)."""
    lists, us = reply_value(reply, "pcp"), reply_field(reply, "pcp_us")
    if lists is None or us is None:
        return (), None
    out = []
    for item in lists.split(","):
        nz, _, vals = item.partition(":")
        node, _, zone = nz.partition(".")
        c, h, b = vals.split("/")
        out.append((int(node), zone, int(c), int(h), int(b)))
    return tuple(out), us / 1e6
