"""Benchmark of a verdict: where its time goes against its floor, and the peers' ways of
waiting for the same drop, on the same runs.

Each repeat is one `touch-free` run (the README's scenario: 1 GiB freed in a 2 GiB guest,
6.1 x QEMU 7.2 by default) judged by the model, with its `timings` (harness/report/timings.py):
start (restore or boot) to SSH, the workload, the release to the phase's end, the model,
QEMU start to the verdict, and the floor (restore + workload + the model's last pass).
`--start both` runs the repeats restored and booted.

The peers' ways are applied to each run's own RSS samples (what the host showed, 10 per
second), not waited out again; each gives when that method would have stopped waiting,
after the release, and what fraction of the final drop it had seen by then:
  tp-libvirt  1 s samples for a fixed 120 s (memory_balloon_freepagereporting.py)
  tp-qemu     a poll every 5 s, up to 30 s, until RSS is within 10% of before the workload
              (balloon_check.py balloon_free)
  firecracker 2 s sleep, then readings 1 s apart until two differ by < 1%
              (test_balloon.py get_stable_rss_mem); its assertion is only "it went down"
A peer's verdict time is ours with our release-to-verdict part replaced by its wait.

The set-up, once (`--no-setup` leaves it out), in an empty cache directory of its own
(BALLOON_E2E_CACHE, removed after; apt's own .deb cache is the machine's): the guest image
built cold, then found cached; the first restore, which boots the guest (QEMU start to
SSH-ready; the guest's own uptime when its rcS is done, read from the console), waits out
its boot-time passes and saves it; then a restore (load, start to SSH). The harness's own
overhead is the start to SSH-ready less the guest's own part: its rcS uptime for a boot
(QEMU's set-up, the firmware and SSH), nothing for a restore (all of it). And the host
side's own CPU: this process's CPU seconds per second over 10 s of an idle restored guest,
the RSS sampler alone, then with the balloon-statistics poller.

`--suite` also times the README's test command (`ci/test`, wall seconds and its last line).

Writes JSON (min / median / max over the repeats, every value, machine and versions) to
bench/results/verdict.json, or --out -.
    .venv/bin/python bench/bench_verdict.py [--repeat 3] [--start restore|boot|both] [--mib 1024] [--suite]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.build import image  # noqa: E402
from harness.config import GuestConfig  # noqa: E402
from harness.measure import hostmem  # noqa: E402
from harness.measure.phase import main_phase
from harness.measure.stats_poller import StatsPoller  # noqa: E402
from harness.scenarios import touch_free  # noqa: E402
from harness.verdict.prediction import predict  # noqa: E402
from harness.vm import guest as guest_mod  # noqa: E402
from harness.vm.guest import Guest  # noqa: E402

# --- the peers' waits, on a run's samples (pure) --------------------------------------------

def _rss_at(samples: list, t: float) -> float | None:
    """The last sample at or before t (samples are [t, rss, ...] after the release)."""
    best = None
    for s in samples:
        if s[0] <= t:
            best = s[1]
        else:
            break
    return best


def tp_libvirt(samples, before, peak, after) -> float:
    return 120.0


def tp_qemu(samples, before, peak, after) -> float:
    for k in range(1, 7):  # every 5 s, up to 30 s
        rss = _rss_at(samples, 5.0 * k)
        if rss is not None and abs(rss - before) <= 0.1 * before:
            return 5.0 * k
    return 30.0


def firecracker(samples, before, peak, after) -> float:
    t, prev = 2.0, _rss_at(samples, 2.0)
    for _ in range(5):
        cur = _rss_at(samples, t + 1.0)
        t += 1.0
        if prev and cur is not None and abs(cur - prev) < 0.01 * prev:
            return t
        prev = cur
    return t


PEERS = {"tp-libvirt": tp_libvirt, "tp-qemu": tp_qemu, "firecracker": firecracker}


def peer_waits(r: dict) -> dict:
    """Pure: per peer, its wait after the release, the fraction of the final drop seen by
    then, and its verdict time (ours with our release-to-verdict part replaced)."""
    ph = r["phases"][-1]
    samples, peak, after = ph["samples"], ph["rss_peak_mib"], ph["rss_after_mib"]
    before = r["rss_before_mib"]
    t = r["timings"]
    ours_after_release = t["verdict_s"] - t["release_at_s"]
    out = {}
    for name, f in PEERS.items():
        wait = f(samples, before, peak, after)
        seen = peak - (_rss_at(samples, wait) or peak)
        out[name] = {"wait_after_release_s": wait, "drop_seen_fraction": round(seen / max(peak - after, 1e-9), 3),
                     "verdict_s": round(t["verdict_s"] - ours_after_release + wait, 2)}
    return out


# --- the runs -----------------------------------------------------------------------------

def one(start: str, mib: int, kernel: str, qemu: str | None) -> dict:
    g = Guest.provisioned(GuestConfig(kernel=kernel, qemu=qemu), start=start)
    try:
        g.launch()
        r = touch_free.run(g, mib=mib)
        predict(r)
    finally:
        g.shutdown()
    m = main_phase(r)
    return {"start": start, "timings": r["timings"], "kernel": r["kernel"], "qemu": r["qemu"], "drop_mib": m["drop_mib"],
            "predicted_mib": m["predicted_mib"], "verdict": r["verdict"], "peers": peer_waits(r)}


def rcs_uptime_s(console: str) -> float | None:
    """Pure: the guest's uptime when its rcS was done (guest_images' init prints it)."""
    m = re.search(r"e2e: rcS done ([0-9.]+)s", console)
    return float(m.group(1)) if m else None


def cpu_per_s(window_s: float) -> float:
    """This process's CPU seconds per second while the caller's threads run and it sleeps."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    time.sleep(window_s)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return round((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / (time.monotonic() - t0), 4)


def setup(kernel: str, qemu: str | None) -> dict:
    """Image cold and cached, the saved guest's build (boot, passes, save), a restore, the
    sampler's CPU: in a cache directory of its own."""
    out: dict = {}
    old = os.environ.get("BALLOON_E2E_CACHE")
    tmp = tempfile.mkdtemp(prefix="bench-cache-")
    os.environ["BALLOON_E2E_CACHE"] = tmp
    guest_mod._provision.cache_clear()
    try:
        for what in ("image_cold_s", "image_cached_s"):
            t = time.monotonic()
            image.get(kernel)
            out[what] = round(time.monotonic() - t, 2)
        for what in ("first_restore", "restore"):
            g = Guest.provisioned(GuestConfig(kernel=kernel, qemu=qemu))
            try:
                g.launch()
                out[what] = dict(g.timings)
                if what == "first_restore":
                    meta = g.saved().meta
                    out["saved_guest"] = json.loads(meta.read_text()) if meta.exists() else None
                    boot_console = g.rundir / guest_mod.SAVED_BOOT_DIR / "console.log"
                    out["saved_guest_rcs_uptime_s"] = rcs_uptime_s(boot_console.read_text()) if boot_console.exists() else None
                else:
                    with hostmem.Sampler(g.pid, g.ram_hvas()):
                        out["sampler_cpu_per_s"] = cpu_per_s(10.0)
                        with StatsPoller(g):
                            out["sampler_and_stats_cpu_per_s"] = cpu_per_s(10.0)
            finally:
                g.shutdown()
        sv = out.get("saved_guest") or {}
        if sv.get("boot_s") is not None and out.get("saved_guest_rcs_uptime_s") is not None:
            out["boot_overhead_s"] = round(sv["boot_s"] - out["saved_guest_rcs_uptime_s"], 2)
        out["restore_overhead_s"] = out["restore"].get("start_s")
    finally:
        if old is None:
            os.environ.pop("BALLOON_E2E_CACHE", None)
        else:
            os.environ["BALLOON_E2E_CACHE"] = old
        guest_mod._provision.cache_clear()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def suite() -> dict:
    """The README's test command, timed: its last line and the tests that failed, by id."""
    t = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        xml = Path(d) / "suite.xml"
        p = subprocess.run(["ci/test", f"--junitxml={xml}"], cwd=ROOT, capture_output=True, text=True)
        wall = round(time.monotonic() - t, 1)
        failed = _failed_ids(xml.read_text()) if xml.exists() else None
    tail = [x for x in p.stdout.splitlines() if x.strip()][-1:] or [""]
    return {"command": "ci/test", "wall_s": wall, "exit": p.returncode, "last_line": tail[0], "failed": failed}


def _failed_ids(junit: str) -> list[str]:
    """Pure: the ids (class::name) of the failed or errored cases of a JUnit XML report."""
    import xml.etree.ElementTree as ET
    return [f"{c.get('classname')}::{c.get('name')}" for c in ET.fromstring(junit).iter("testcase")
            if c.find("failure") is not None or c.find("error") is not None]


def spread(xs: list[float]) -> dict:
    xs = [x for x in xs if x is not None]
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "all": xs} if xs else {}


def summary(runs: list[dict]) -> dict:
    keys = sorted({k for r in runs for k, v in r["timings"].items() if isinstance(v, (int, float))})
    out = {k: spread([r["timings"].get(k) for r in runs]) for k in keys}
    out["verdict_minus_floor_s"] = spread([r["timings"]["verdict_s"] - r["timings"]["floor_s"]
                                           for r in runs if "floor_s" in r["timings"]])
    for name in PEERS:
        out[f"{name}_ratio"] = spread([round(r["peers"][name]["verdict_s"] / r["timings"]["verdict_s"], 2) for r in runs])
        out[f"{name}_drop_seen_fraction"] = spread([r["peers"][name]["drop_seen_fraction"] for r in runs])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--start", choices=("restore", "boot", "both"), default="both")
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--qemu", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "verdict.json"))
    ap.add_argument("--no-setup", action="store_true", help="leave out the image / save / restore / sampler section")
    ap.add_argument("--suite", action="store_true", help="also time the README's test command (ci/test, ~9 min)")
    a = ap.parse_args()
    starts = ("restore", "boot") if a.start == "both" else (a.start,)
    setup_res = None
    if not a.no_setup:
        print("[bench] set-up: image cold / cached, save, restore, sampler CPU", file=sys.stderr, flush=True)
        setup_res = setup(a.kernel, a.qemu)
    runs = []
    for start in starts:
        for i in range(a.repeat):
            print(f"[bench] {start} {i + 1}/{a.repeat}", file=sys.stderr, flush=True)
            runs.append(one(start, a.mib, a.kernel, a.qemu))
    res = {
        "what": f"touch-free {a.mib} MiB in a 2048 MiB guest, kernel {a.kernel}, QEMU {a.qemu or 'system'}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "host_kernel": platform.release(),
                    "load_avg": os.getloadavg()},
        "versions": {"kernel": runs[0]["kernel"], "qemu": runs[0]["qemu"]},
        "by_start": {s: summary([r for r in runs if r["start"] == s]) for s in starts},
        "setup": setup_res,
        "runs": runs,
    }
    if a.suite:
        print("[bench] the README's test command (ci/test)", file=sys.stderr, flush=True)
        res["suite"] = suite()
    text = json.dumps(res, indent=1)
    if a.out == "-":
        print(text)
    else:
        Path(a.out).write_text(text + "\n")
        print(f"[bench] written {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
