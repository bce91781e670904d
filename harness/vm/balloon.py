"""The classic balloon and its statistics through QMP; pure parsers first, then the I/O.

QEMU side read in hw/virtio/virtio-balloon.c (7.2 and 10.0, notes/balloon-family.md):
- QMP `balloon` value = the guest's target size in bytes; the device asks the guest for
  num_pages = (ram - value) >> 12 pages. `query-balloon` actual = ram - pages held x 4096.
- BALLOON_CHANGE carries `actual` whenever the guest's config write moves it
  (virtio_balloon_set_config); QMP rate-limits it to one per second (monitor/monitor.c
  monitor_qapi_event_conf), so events see steps, not every 256-page batch.
- guest-stats (qom-get on the device) : {"stats": {"stat-...": u64}, "last-update": host
  epoch seconds at receipt}. A tag the guest did not send reads 2^64-1 (reset_stats).
  The polling interval is the device's `guest-stats-polling-interval` (seconds, 0 off).
Guest side: Linux drivers/virtio/virtio_balloon.c update_balloon_stats (6.1, 6.12).
"""
from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field

from harness.errors import GuestError
from harness.measure.procfs import parse_meminfo
from harness.measure.snapshot import parse_vmstat

BALLOON_PAGE = 4096  # VIRTIO_BALLOON_PFN_SHIFT 12, whatever the host page size
UNSET = (1 << 64) - 1  # a statistic the guest never sent (QEMU reset_stats)
KPF_BUDDY = 10  # include/uapi/linux/kernel-page-flags.h
KPF_OFFLINE = 23  # include/uapi/linux/kernel-page-flags.h; balloon_page_insert sets PageOffline
DEVICE = "/machine/peripheral/balloon0"  # qemu_argv.build names the device balloon0

# The ten statistics of a 6.1 guest (tags 0-9) and the six a 6.12 guest adds (10-15), with
# the guest's source of each (update_balloon_stats / update_balloon_vm_stats). Each source is
# (what, scale): what is a /proc/vmstat field, or a sum of fields "a+b", or "meminfo:Key"
# (kB); the statistic = value x scale (pages_to_bytes where the driver uses it).
STATS_61 = {
    "stat-swap-in": ("pswpin", BALLOON_PAGE),
    "stat-swap-out": ("pswpout", BALLOON_PAGE),
    "stat-major-faults": ("pgmajfault", 1),
    "stat-minor-faults": ("pgfault", 1),  # all faults: events[PGFAULT]
    "stat-free-memory": ("nr_free_pages", BALLOON_PAGE),  # si_meminfo freeram
    "stat-total-memory": ("meminfo:MemTotal", 1024),  # totalram_pages
    "stat-available-memory": ("meminfo:MemAvailable", 1024),  # si_mem_available
    "stat-disk-caches": ("nr_file_pages", BALLOON_PAGE),  # global_node_page_state(NR_FILE_PAGES)
    "stat-htlb-pgalloc": ("htlb_buddy_alloc_success", 1),
    "stat-htlb-pgfail": ("htlb_buddy_alloc_fail", 1),
}
STATS_612_EXTRA = {
    "stat-oom-kills": ("oom_kill", 1),
    # sum over zones of ALLOCSTALL_<zone>; /proc/vmstat prints the ones this kernel has
    "stat-alloc-stalls": ("allocstall_dma+allocstall_dma32+allocstall_normal+allocstall_movable+allocstall_device", 1),
    "stat-async-scans": ("pgscan_kswapd", BALLOON_PAGE),
    "stat-direct-scans": ("pgscan_direct", BALLOON_PAGE),
    "stat-async-reclaims": ("pgsteal_kswapd", BALLOON_PAGE),
    "stat-direct-reclaims": ("pgsteal_direct", BALLOON_PAGE),
}
# Counters only grow; the rest are gauges read at one instant.
COUNTERS = frozenset({"stat-swap-in", "stat-swap-out", "stat-major-faults", "stat-minor-faults",
                      "stat-htlb-pgalloc", "stat-htlb-pgfail", *STATS_612_EXTRA})


# --- pure ------------------------------------------------------------------------

@dataclass(frozen=True)
class BalloonChange:
    """One BALLOON_CHANGE event: QEMU's own timestamp (host wall clock) and the new actual."""
    t: float
    actual: int


def parse_events(events: list[dict]) -> list[BalloonChange]:
    """QMP events (as qemu.qmp.legacy returns them) -> the BALLOON_CHANGE ones, in order."""
    out = []
    for e in events:
        if e.get("event") != "BALLOON_CHANGE":
            continue
        try:
            ts = e["timestamp"]
            out.append(BalloonChange(ts["seconds"] + ts["microseconds"] / 1e6, int(e["data"]["actual"])))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed BALLOON_CHANGE event {e!r}") from err
    return out


def pages_for(ram_bytes: int, target_bytes: int) -> int:
    """Pages the guest is asked to hold in the balloon (virtio_balloon_to_target)."""
    return (ram_bytes - target_bytes) >> 12


@dataclass(frozen=True)
class GuestStats:
    values: dict  # name -> int, or None where the guest sent nothing (2^64-1)
    last_update: int  # host epoch seconds when QEMU received them; 0: never

    def get(self, name: str) -> int | None:
        return self.values.get(name)

    def set_names(self) -> list[str]:
        return sorted(k for k, v in self.values.items() if v is not None)


def parse_guest_stats(reply: dict) -> GuestStats:
    """qom-get guest-stats reply -> GuestStats. Raises ValueError on anything else."""
    try:
        raw, last = reply["stats"], int(reply["last-update"])
        values = {}
        for k, v in raw.items():
            if not isinstance(v, int) or not 0 <= v <= UNSET:
                raise ValueError(f"{k}={v!r}")
            values[k] = None if v == UNSET else v
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a guest-stats reply ({e}): {reply!r}") from None
    return GuestStats(values, last)


def expected_stat(name: str, vmstat: dict[str, int], meminfo: dict[str, int]) -> int | None:
    """The value the guest driver would send for `name`, computed from /proc (None: unknown name)."""
    src = STATS_61.get(name) or STATS_612_EXTRA.get(name)
    if src is None:
        return None
    what, scale = src
    if what.startswith("meminfo:"):
        return meminfo[what.split(":", 1)[1]] * scale
    return sum(vmstat.get(f, 0) for f in what.split("+")) * scale


@dataclass(frozen=True)
class StatCheck:
    """One statistic against the guest's own counters read just before (a) and after (b)."""
    name: str
    value: int
    before: int
    after: int
    counter: bool
    slack: int  # allowed beyond [min(a,b), max(a,b)], in the statistic's unit
    slack_below: int | None = None  # below min(a,b), where it differs from slack

    @property
    def skew(self) -> int:
        """How far outside [min(a,b), max(a,b)] the statistic lies (0 inside)."""
        lo, hi = sorted((self.before, self.after))
        return max(lo - self.value, self.value - hi, 0)

    @property
    def ok(self) -> bool:
        if self.counter:  # a counter read between a and b lies between them, exactly
            return self.before <= self.value <= self.after
        lo, hi = sorted((self.before, self.after))
        below = self.slack if self.slack_below is None else self.slack_below
        return lo - below <= self.value <= hi + self.slack

    def to_json(self) -> dict:
        return {"name": self.name, "value": self.value, "before": self.before, "after": self.after,
                "counter": self.counter, "slack": self.slack, "slack_below": self.slack_below,
                "skew": self.skew, "ok": self.ok}


def check_stats(stats: GuestStats, before: tuple[dict, dict], after: tuple[dict, dict],
                gauge_slack: dict[str, int] | None = None,
                gauge_slack_below: dict[str, int] | None = None) -> list[StatCheck]:
    """Every statistic the guest set against /proc read before and after it was gathered.
    before/after: (vmstat, meminfo) parsed. gauge_slack: bytes a gauge may lie outside the
    bracket (default 0); gauge_slack_below: below it, where that differs."""
    out = []
    for name in stats.set_names():
        a, b = expected_stat(name, *before), expected_stat(name, *after)
        if a is None:
            continue
        gauge = name not in COUNTERS
        out.append(StatCheck(name, stats.values[name], a, b, not gauge,
                             (gauge_slack or {}).get(name, 0) if gauge else 0,
                             (gauge_slack_below or {}).get(name) if gauge else None))
    return out


def flag_runs(kpageflags: bytes, bit: int) -> list[tuple[int, int]]:
    """Pure: /proc/kpageflags (8 bytes per pfn, native order) -> [start, end) runs of pfns with `bit`."""
    if len(kpageflags) % 8:
        raise ValueError(f"kpageflags: {len(kpageflags)} bytes is not a whole number of entries")
    flags = array("Q")
    flags.frombytes(kpageflags)
    mask = 1 << bit
    runs: list[tuple[int, int]] = []
    start = None
    for pfn, f in enumerate(flags):
        if f & mask:
            if start is None:
                start = pfn
        elif start is not None:
            runs.append((start, pfn))
            start = None
    if start is not None:
        runs.append((start, len(flags)))
    return runs


def offline_pfns(kpageflags: bytes) -> list[tuple[int, int]]:
    """The balloon's pages: KPF_OFFLINE (include/linux/balloon_compaction.h balloon_page_insert
    -> __SetPageOffline; fs/proc/page.c stable_page_flags)."""
    return flag_runs(kpageflags, KPF_OFFLINE)


def free_pfns(kpageflags: bytes) -> list[tuple[int, int]]:
    """Free guest pages: KPF_BUDDY on every page of a free block (harness/measure/perblock.py)."""
    return flag_runs(kpageflags, KPF_BUDDY)


def intersect(a, b) -> list[tuple[int, int]]:
    """Pure: the pfns in both lists of sorted, disjoint [start, end) runs."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def minus(a, b) -> list[tuple[int, int]]:
    """Pure: the pfns of runs a not in runs b (both sorted, disjoint)."""
    out, j = [], 0
    for s, e in a:
        cur = s
        while j < len(b) and b[j][1] <= cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] < e:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < e:
            out.append((cur, e))
    return out


def run_pages(runs) -> int:
    return sum(e - s for s, e in runs)


def held_in_runs(held: bytes | bytearray, runs) -> int:
    """Pages of `runs` the host held (held[pfn] == 1, harness/perblock.Capture.held)."""
    return sum(held[s:e].count(1) for s, e in runs)


# --- I/O -------------------------------------------------------------------------

def _cat(guest, *paths: str) -> list[str]:
    """The texts of the guest's files, read in one command."""
    return guest.run("; echo ----; ".join(f"cat {p}" for p in paths)).stdout.split("----\n")


def read_proc(guest) -> tuple[dict, dict]:
    """(vmstat, meminfo) of the guest, read in one command."""
    vm, mem = _cat(guest, "/proc/vmstat", "/proc/meminfo")
    return parse_vmstat(vm), parse_meminfo(mem)


def read_proc_zoneinfo(guest) -> tuple[dict, dict, str]:
    """(vmstat, meminfo, /proc/zoneinfo's text) of the guest, read in one command."""
    vm, mem, zi = _cat(guest, "/proc/vmstat", "/proc/meminfo", "/proc/zoneinfo")
    return parse_vmstat(vm), parse_meminfo(mem), zi


def run_bytes(guest, cmd: str, timeout: float = 60) -> bytes:
    """A guest command's raw stdout (Session.run decodes text)."""
    try:
        _, out, err = guest.ssh.client.exec_command(cmd, timeout=timeout)
        data = out.read()
        status = out.channel.recv_exit_status()
    except OSError as e:
        raise GuestError(f"guest command {cmd!r} failed: {e}") from e
    if status:
        raise GuestError(f"guest command {cmd!r} exited {status}: {err.read().decode(errors='replace')[-300:]}")
    return data


def kpageflags(guest) -> bytes:
    return run_bytes(guest, "cat /proc/kpageflags")


def balloon_runs(guest) -> list[tuple[int, int]]:
    return offline_pfns(kpageflags(guest))


def actual(guest) -> int:
    return int(guest.qmp_cmd("query-balloon")["actual"])


def events(guest) -> list[BalloonChange]:
    """BALLOON_CHANGE events QMP has queued since the last call (the rest are dropped)."""
    if not guest.qmp:
        return []
    with guest.qmp_lock:
        return parse_events(guest.qmp.get_events(wait=False))


@dataclass
class Move:
    """One balloon move: asked target, what query-balloon said over time, the events."""
    target: int
    t_asked: float  # monotonic
    polls: list = field(default_factory=list)  # (seconds after asked, actual)
    events: list = field(default_factory=list)  # BalloonChange
    converged_s: float | None = None

    def to_json(self) -> dict:
        return {"target": self.target, "converged_s": self.converged_s,
                "polls": self.polls[:: max(1, len(self.polls) // 50)] + self.polls[-1:],
                "events": [[e.t, e.actual] for e in self.events]}


def move(guest, target: int, timeout: float = 120.0, settle_events_s: float = 1.5) -> Move:
    """QMP balloon to `target` bytes; poll query-balloon until actual == target; collect
    BALLOON_CHANGE events until one reports the target (or settle_events_s after
    convergence: events are rate-limited to 1/s). TimeoutError if it never converges."""
    events(guest)  # drop what was queued before
    m = Move(target, time.monotonic())
    guest.qmp_cmd("balloon", value=target)
    deadline = m.t_asked + timeout
    while True:
        a = actual(guest)
        now = time.monotonic()
        m.polls.append((round(now - m.t_asked, 2), a))
        if a == target:
            m.converged_s = round(now - m.t_asked, 2)
            break
        if now > deadline:
            raise TimeoutError(f"balloon: actual {a} did not reach {target} in {timeout:.0f} s")
        time.sleep(0.1)  # poll interval of a condition with a deadline
    end = time.monotonic() + settle_events_s
    while True:
        m.events += events(guest)
        if (m.events and m.events[-1].actual == target) or time.monotonic() > end:
            break
        time.sleep(0.1)
    return m


def wait_event(guest, value: int, timeout: float = 3.0) -> list[BalloonChange]:
    """BALLOON_CHANGE events until one reports `value` (QMP holds back an event up to 1 s
    after the previous one) or `timeout` s pass; returns every event collected."""
    got: list[BalloonChange] = []
    deadline = time.monotonic() + timeout
    while not (got and got[-1].actual == value) and time.monotonic() < deadline:
        got += events(guest)
        time.sleep(0.1)
    return got


def get_stats(guest) -> GuestStats:
    return parse_guest_stats(guest.qmp_cmd("qom-get", path=DEVICE, property="guest-stats"))


def set_polling(guest, seconds: int) -> int:
    guest.qmp_cmd("qom-set", path=DEVICE, property="guest-stats-polling-interval", value=seconds)
    return int(guest.qmp_cmd("qom-get", path=DEVICE, property="guest-stats-polling-interval"))


def wait_stats_after(guest, last_update: int, timeout: float = 30.0) -> GuestStats:
    """Stats received after `last_update` (host epoch seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        s = get_stats(guest)
        if s.last_update > last_update:
            return s
        if time.monotonic() > deadline:
            raise TimeoutError(f"guest stats not updated after {last_update} in {timeout:.0f} s")
        time.sleep(0.1)
