"""stats: the balloon's guest statistics (QOM guest-stats) against the guest's own /proc.

The polling interval is set through QOM (`guest-stats-polling-interval`, read back).
Each bracket reads /proc/vmstat + /proc/meminfo + /proc/zoneinfo (a), waits for a set of
statistics the guest gathered after a, and reads /proc again (b): a counter must lie in
[a, b] exactly, a gauge within its slack of [min, max] (gauge_slack: GAUGE_SLACK, and for
free and available memory what the per-cpu lists can move). Why "gathered after a":
QEMU re-arms its polling timer when a set arrives (hw/virtio/virtio-balloon.c
virtio_balloon_receive_stats -> balloon_stats_change_timer), and the guest gathers
a set only when QEMU asks (drivers/virtio/virtio_balloon.c stats_request ->
update_balloon_stats). So the set after the first one received after a was asked
for, and gathered, after a. last-update has whole seconds: a set whose last-update
exceeds floor(t_a) arrived after t_a.

Between brackets the guest faults in TOUCH_MIB (4 KiB pages): minor faults must
grow by at least that many pages.
"""
from __future__ import annotations

import time

from harness.vm import balloon
from harness.errors import GuestError
from harness.vm.guest import Guest
from harness.model.kernel import kernel_version
from harness.scenarios.common import measuring
from harness.measure.snapshot import parse_zoneinfo

POLL_S = 1
TOUCH_MIB = 64
BRACKETS = 3
# Gauges are read by `cat` in an SSH session for a and b, while the guest is idle when
# it gathers the statistics: the session's own pages (dropbear's child, sh, cat) are
# allocated in a and b and not at the statistics' moment. Measured (6.12 x QEMU 10.0, 3
# brackets): free and available memory lay at most 252 KiB (63 pages) outside [a, b],
# disk caches never. Slack: 4x the free-memory skew, 1 MiB; disk caches 256 KiB (64
# pages of tmpfs a session could write). Total memory is exact.
GAUGE_SLACK = {"stat-free-memory": 1 << 20, "stat-available-memory": 1 << 20, "stat-disk-caches": 256 << 10,
               "stat-total-memory": 0}


class EarlyStatsGuest(Guest):
    """A Guest that asks for guest-stats once as soon as QMP is up, before the guest's
    kernel (and its balloon driver) has run: what QEMU shows before any set arrived.
    It boots: a restored guest's driver has long sent its first set."""

    def __init__(self, cfg, parts, rundir=None, start="boot"):
        super().__init__(cfg, parts, rundir, start="boot")

    def wait_console(self, text, deadline):
        if not hasattr(self, "stats_before_driver"):
            try:
                self.stats_before_driver = {"reply": self.qmp_cmd("qom-get", path=balloon.DEVICE, property="guest-stats")}
            except GuestError as e:
                self.stats_before_driver = {"error": str(e)}
        super().wait_console(text, deadline)


def before_driver_ok(early: dict) -> bool:
    """Before the driver sent anything: an error, or every statistic unset (2^64-1)."""
    if "error" in early:
        return "updated any stats" in early["error"]
    st = balloon.parse_guest_stats(early["reply"])
    return st.last_update == 0 or all(v is None for v in st.values.values())


def pcp_pages(zoneinfo_text: str) -> dict:
    """Pure: the pages on every CPU's per-cpu lists (count) and what they may hold (high)."""
    zones = parse_zoneinfo(zoneinfo_text)
    return {"count": sum(p.count for z in zones for p in z.pagesets),
            "high": sum(p.high for z in zones for p in z.pagesets)}


def bracket(guest) -> dict:
    a = balloon.read_proc_zoneinfo(guest)
    t_a = time.time()
    first = balloon.wait_stats_after(guest, int(t_a))
    s = balloon.wait_stats_after(guest, first.last_update)
    b = balloon.read_proc_zoneinfo(guest)
    return {"t_a": t_a, "first_last_update": first.last_update, "stats": s.values, "last_update": s.last_update,
            "a": {"vmstat": a[0], "meminfo": a[1], "pcp": pcp_pages(a[2])},
            "b": {"vmstat": b[0], "meminfo": b[1], "pcp": pcp_pages(b[2])}}


def gauge_slack(br: dict) -> tuple[dict, dict]:
    """Pure: (above, below) the bracket, in bytes, for each gauge of one bracket. Free and
    available memory count the buddy lists' pages, not the per-cpu lists': a refill moves
    pages from those to these with no allocation, a flush or vmstat's decay back (a 6.12
    bracket right after a 64 MiB touch read free memory 4042 pages, 15.8 MiB, under both of
    its reads, which rose 16.8 MB from a to b: about two full 6.12 refills, 2 x (63 << 5)
    = 4032 pages).
    With F + P (free and per-cpu pages) kept but for allocations (GAUGE_SLACK's), the
    statistic lies at most P (the reads' larger) above the bracket and at most the lists' room
    below it, H - P (the larger H, the smaller P). On 6.12 the highs move between the reads
    (decay lowers them, refills raise them), so H at the statistics' moment is taken as the
    larger read, not bounded. Brackets read before the lists were (no `pcp`): GAUGE_SLACK
    alone."""
    pa, pb = br["a"].get("pcp"), br["b"].get("pcp")
    if pa is None or pb is None:
        return dict(GAUGE_SLACK), dict(GAUGE_SLACK)
    page = balloon.BALLOON_PAGE             # as the statistics' pages are converted (balloon.STATS_61)
    above = max(pa["count"], pb["count"]) * page
    below = max(0, max(pa["high"], pb["high"]) - min(pa["count"], pb["count"])) * page
    up, down = dict(GAUGE_SLACK), dict(GAUGE_SLACK)
    for name in ("stat-free-memory", "stat-available-memory"):
        up[name] += above
        down[name] += below
    return up, down


def run(guest, progress=lambda m: None) -> dict:
    with measuring(guest, progress, stats=False) as r:  # its own interval, and the driver's first set
        at_start = balloon.get_stats(guest)  # the set the driver sent when it loaded
        interval = balloon.set_polling(guest, POLL_S)
        brackets = []
        for i in range(BRACKETS):
            progress(f"stats: bracket {i + 1} of {BRACKETS}")
            brackets.append(bracket(guest))
            if i + 1 < BRACKETS:
                guest.run(f"printf 'touch t {TOUCH_MIB} nohuge\\nquit\\n' | e2emem")
        return r.result("stats", poll_s=POLL_S, interval_read_back=interval, touch_mib=TOUCH_MIB,
                        stats_at_start={"stats": at_start.values, "last_update": at_start.last_update},
                        stats_before_driver=getattr(guest, "stats_before_driver", None), brackets=brackets)


# --- pure: verdicts --------------------------------------------------------------

def expected_names(kernel: str, qemu: str) -> tuple[set, set]:
    """(names QEMU shows, names the guest sets) for a guest kernel and QEMU version.
    QEMU < 9.2 knows tags 0-9 only and drops the rest (virtio_balloon_receive_stats:
    tag < VIRTIO_BALLOON_S_NR); a guest before 6.12 sends tags 0-9."""
    base, extra = set(balloon.STATS_61), set(balloon.STATS_612_EXTRA)
    q = tuple(int(x) for x in qemu.split(".")[:2])
    shown = base | extra if q >= (9, 2) else base
    sent = base | extra if kernel_version(kernel) >= (6, 12) else base
    return shown, shown & sent


def judge(result: dict) -> dict:
    shown, sent = expected_names(result["kernel"], result["qemu"])
    checks, skews = {}, {}
    checks["interval_read_back"] = result["interval_read_back"] == result["poll_s"]
    if result.get("stats_before_driver"):
        checks["before_driver"] = before_driver_ok(result["stats_before_driver"])
    series = []
    for i, br in enumerate(result["brackets"]):
        st = balloon.GuestStats(br["stats"], br["last_update"])
        checks[f"b{i}:names_shown"] = set(st.values) == shown
        checks[f"b{i}:names_set"] = set(st.set_names()) == sent
        a = (br["a"]["vmstat"], br["a"]["meminfo"])
        b = (br["b"]["vmstat"], br["b"]["meminfo"])
        for c in balloon.check_stats(st, a, b, *gauge_slack(br)):
            checks[f"b{i}:{c.name}"] = c.ok
            skews[c.name] = max(skews.get(c.name, 0), c.skew)
        series.append(st)
    for name in balloon.COUNTERS & sent:
        vals = [s.values.get(name) for s in series]  # a counter that went missing or unset fails
        checks[f"monotonic:{name}"] = None not in vals and vals == sorted(vals)
    faults = [s.values.get("stat-minor-faults") or 0 for s in series]
    pages = result["touch_mib"] * 256
    checks["touch_faults"] = all(b - a >= pages for a, b in zip(faults, faults[1:]))
    result["stats_checks"] = checks
    result["stats_skew"] = skews
    result["verdict"] = "within" if all(checks.values()) else "outside"
    return checks


def human(result: dict) -> str:
    shown, sent = expected_names(result["kernel"], result["qemu"])
    last = result["brackets"][-1]
    lines = [f"scenario stats: guest {result['kernel']}, QEMU {result['qemu']}; polling {result['poll_s']} s "
             f"(read back {result['interval_read_back']}); {len(shown)} statistics shown, {len(sent)} set by the guest"]
    for name in sorted(last["stats"]):
        v = last["stats"][name]
        lines.append(f"  {name:<24} {'unset (2^64-1)' if v is None else v:>16}   largest skew vs /proc "
                     f"{result['stats_skew'].get(name, '-')}")
    if result.get("stats_before_driver"):
        e = result["stats_before_driver"]
        lines.append(f"  before the driver: {e.get('error') or e.get('reply')}")
    bad = [k for k, ok in result["stats_checks"].items() if not ok]
    if bad:
        lines.append(f"  failed checks: {', '.join(bad)}")
    lines.append(f"  verdict: {result['verdict'].upper()}")
    return "\n".join(lines)
