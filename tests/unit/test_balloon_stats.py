"""stats and deflate-on-oom verdicts (pure) on real /proc texts, with planted errors."""
import copy
import json
from pathlib import Path

import pytest

from harness.vm import balloon
from harness.measure.procfs import parse_meminfo
from harness.scenarios import deflate_on_oom, stats
from harness.measure.snapshot import parse_vmstat

DATA = Path(__file__).parent.parent / "data" / "balloon"


@pytest.fixture(scope="module")
def pair():
    """Two real reads of a 6.12 guest's /proc/vmstat and /proc/meminfo (a: before, b: after
    a 256 MiB free), as the stats brackets take them."""
    d = json.loads((DATA / "proc_pair_6.12.json").read_text())
    return d, [(parse_vmstat(d[k]["vmstat"]), parse_meminfo(d[k]["meminfo"])) for k in ("a", "b")]


def _stats_between(pa, pb, names):
    """What the driver would have sent at a moment between a and b: counters from b, gauges from a."""
    out = {}
    for n in names:
        src = pb if n in balloon.COUNTERS else pa
        out[n] = balloon.expected_stat(n, *src)
    return out


def _result(d, pa, pb, qemu="10.0.2", kernel=None):
    kernel = kernel or d["kernel"]
    shown, sent = stats.expected_names(kernel, qemu)
    values = {n: (v if n in sent else None) for n, v in _stats_between(pa, pb, shown).items()}
    br = {"stats": values, "last_update": 10, "a": {"vmstat": pa[0], "meminfo": pa[1]},
          "b": {"vmstat": pb[0], "meminfo": pb[1]}}
    br2 = copy.deepcopy(br)
    br2["stats"]["stat-minor-faults"] += stats.TOUCH_MIB * 256
    br2["b"]["vmstat"] = {**pb[0], "pgfault": pb[0]["pgfault"] + stats.TOUCH_MIB * 256}
    return {"kernel": kernel, "qemu": qemu, "poll_s": 1, "interval_read_back": 1, "touch_mib": stats.TOUCH_MIB,
            "brackets": [br, br2], "stats_before_driver": {"error": "QMP qom-get failed (ExecuteError: guest hasn't updated any stats yet)"}}


def test_names_by_kernel_and_qemu():
    shown, sent = stats.expected_names("6.12.117+deb13-amd64", "10.0.2")
    assert len(shown) == 16 and sent == shown
    shown, sent = stats.expected_names("6.1.0-57-amd64", "10.0.2")
    assert len(shown) == 16 and len(sent) == 10  # the six newer ones read 2^64-1
    shown, sent = stats.expected_names("6.12.117+deb13-amd64", "7.2.22")
    assert len(shown) == 10 and sent == shown  # QEMU 7.2 drops tags >= 10


def test_consistent_stats_pass(pair):
    d, (pa, pb) = pair
    r = _result(d, pa, pb)
    stats.judge(r)
    assert r["verdict"] == "within", [k for k, ok in r["stats_checks"].items() if not ok]


@pytest.mark.parametrize("plant,check", [
    (lambda r: r["brackets"][0]["stats"].__setitem__("stat-minor-faults", r["brackets"][0]["stats"]["stat-minor-faults"] + 1),
     "b0:stat-minor-faults"),   # a counter past the later read
    (lambda r: r["brackets"][0]["stats"].__setitem__("stat-free-memory", r["brackets"][0]["stats"]["stat-free-memory"]
                                                      + (300 << 20)), "b0:stat-free-memory"),  # gauge beyond slack
    (lambda r: r["brackets"][0]["stats"].__setitem__("stat-total-memory", r["brackets"][0]["stats"]["stat-total-memory"] - 4096),
     "b0:stat-total-memory"),   # total is exact
    (lambda r: r["brackets"][0]["stats"].__setitem__("stat-oom-kills", None), "b0:names_set"),
    (lambda r: r["brackets"][0]["stats"].pop("stat-htlb-pgfail"), "b0:names_shown"),
    (lambda r: r["brackets"][1]["stats"].__setitem__("stat-minor-faults", r["brackets"][0]["stats"]["stat-minor-faults"] + 5),
     "touch_faults"),
    (lambda r: r.__setitem__("interval_read_back", 0), "interval_read_back"),
    (lambda r: r.__setitem__("stats_before_driver", {"reply": {"stats": {"stat-free-memory": 1}, "last-update": 5}}),
     "before_driver"),
])
def test_planted_stats_errors_fail(pair, plant, check):
    d, (pa, pb) = pair
    r = _result(d, pa, pb)
    plant(r)
    stats.judge(r)
    assert r["verdict"] == "outside" and not r["stats_checks"][check]


def _oom(on: bool, **over):
    r = {"deflate_on_oom": on, "balloon_mib": 256, "memory_mib": 1024, "workload_status": 0 if on else 137,
         "inflate": {"converged_s": 1.6}, "actual_before": 768 << 20, "actual_after": (768 + 71 << 20) if on else 768 << 20,
         "memtotal_kb": {"start": 981476, "inflated": 981476 if on else 981476 - 262144,
                         "end": 981476 if on else 981476 - 262144},
         "vmstat_before": {"balloon_deflate": 0, "oom_kill": 0}, "events": [[1.0, (768 + 71 << 20) if on else 0]],
         "vmstat_after": {"balloon_deflate": 71 * 256 if on else 0, "oom_kill": 0 if on else 1}}
    r.update(over)
    return r


def test_deflate_on_oom_verdicts_both_ways():
    # figures of the measured runs (MEASURED.md): on deflated 71 MiB, off killed once
    for on in (True, False):
        r = _oom(on)
        deflate_on_oom.judge(r)
        assert r["verdict"] == "within", r["oom_checks"]
    bad = [
        (True, {"vmstat_after": {"balloon_deflate": 71 * 256 + 1, "oom_kill": 0}}, "whole_oom_steps"),
        (True, {"vmstat_after": {"balloon_deflate": 71 * 256, "oom_kill": 1}}, "no_oom_kill"),
        (True, {"actual_after": 768 + 70 << 20}, "actual_follows_deflate"),
        (True, {"memtotal_kb": {"start": 981476, "inflated": 981476 - 262144, "end": 981476 - 262144}}, "memtotal"),
        (False, {"vmstat_after": {"balloon_deflate": 256, "oom_kill": 1}}, "kept"),
        (False, {"vmstat_after": {"balloon_deflate": 0, "oom_kill": 0}}, "oom_killed"),
    ]
    for on, over, check in bad:
        r = _oom(on, **over)
        deflate_on_oom.judge(r)
        assert r["verdict"] == "outside" and not r["oom_checks"][check], (check, r["oom_checks"])


def test_oom_report_is_not_a_fault_but_a_real_fault_is():
    console = "\n".join([
        "[ 28.85] e2emem invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0",
        "[ 28.85] Call Trace:", "[ 28.85]  <TASK>", "[ 28.87] Mem-Info:",
        "[ 28.89] Out of memory: Killed process 143 (e2emem) total-vm:665684kB, anon-rss:624024kB",
        "[ 30.00] BUG: kernel NULL pointer dereference, address: 0000000000000000", "[ 30.00] Call Trace:"])
    assert deflate_on_oom.unexpected_faults(console) == ["[ 30.00] BUG: kernel NULL pointer dereference, address: "
                                                         "0000000000000000", "[ 30.00] Call Trace:"]


def test_stored_real_runs_are_within():
    r = json.loads((DATA / "stats_6.12_10.0.json").read_text())
    stats.judge(r)
    assert r["verdict"] == "within" and r["stats_checks"]["before_driver"]
    assert r["stats_skew"]["stat-free-memory"] <= stats.GAUGE_SLACK["stat-free-memory"] / 4
    r["brackets"][1]["stats"]["stat-async-scans"] = None  # the 6.12 guest stops sending one
    stats.judge(r)
    assert not r["stats_checks"]["b1:names_set"] and not r["stats_checks"]["monotonic:stat-async-scans"]
    d = json.loads((DATA / "deflate_on_oom_on_6.1_7.2.json").read_text())
    deflate_on_oom.judge(d)
    assert d["verdict"] == "within" and d["deflated_mib"] == 48
    d["vmstat_after"]["oom_kill"] += 1
    deflate_on_oom.judge(d)
    assert d["verdict"] == "outside"


def test_free_and_available_memory_may_lie_outside_a_bracket_by_what_the_per_cpu_lists_move():
    # A fresh clone's suite (6.12 x QEMU 10.0, booted): bracket 1, right after a 64 MiB touch,
    # read free memory 4042 pages under both of its reads, which rose 16.8 MB from a to b:
    # pages moving between the per-cpu lists and the buddy lists with no allocation. That run
    # did not read the lists: the old slack alone, outside.
    old = json.loads((DATA / "stats_refill_6.12_10.0.json").read_text())
    stats.judge(old)
    assert old["verdict"] == "outside" and old["stats_skew"]["stat-free-memory"] == 4042 * 4096
    assert {k for k, ok in old["stats_checks"].items() if not ok} == {"b1:stat-free-memory",
                                                                      "b1:stat-available-memory"}
    # A run that reads them (count and high summed over every CPU and zone, at a and at b):
    # after the touch the lists held 12905 pages at a and 9160 at b, high 20013 and 15758.
    r = json.loads((DATA / "stats_pcp_6.12_10.0.json").read_text())
    br = r["brackets"][1]
    assert (br["a"]["pcp"], br["b"]["pcp"]) == ({"count": 12905, "high": 20013}, {"count": 9160, "high": 15758})
    up, down = stats.gauge_slack(br)
    assert up["stat-free-memory"] == (1 << 20) + 12905 * 4096           # the larger count
    assert down["stat-free-memory"] == (1 << 20) + (20013 - 9160) * 4096  # the room: larger high, smaller count
    assert up["stat-disk-caches"] == stats.GAUGE_SLACK["stat-disk-caches"]
    stats.judge(r)
    assert r["verdict"] == "within", {k for k, ok in r["stats_checks"].items() if not ok}
    # planted: free memory in KiB, or reported as available memory (72 MB apart before the
    # touch, when the lists held 6265 pages): outside
    for wrong in (lambda s: s["stat-free-memory"] // 1024, lambda s: s["stat-available-memory"]):
        p = copy.deepcopy(r)
        for b in p["brackets"]:
            b["stats"]["stat-free-memory"] = wrong(b["stats"])
        stats.judge(p)
        assert p["verdict"] == "outside" and not p["stats_checks"]["b0:stat-free-memory"]
