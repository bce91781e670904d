"""Benchmark of a verdict: where its time goes against its floor, and the peers' ways of
waiting for the same drop, on the same runs.

Each repeat is one `touch-free` run (the README's scenario: 1 GiB freed in a 2 GiB guest,
6.1 x QEMU 7.2 by default) judged by the model, with its `timings` (harness/timings.py):
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

Writes JSON (min / median / max over the repeats, every value, machine and versions) to
bench/results/verdict.json, or --out -.
    .venv/bin/python bench/bench_verdict.py [--repeat 3] [--start restore|boot|both] [--mib 1024]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config import GuestConfig  # noqa: E402
from harness.guest import Guest  # noqa: E402
from harness.prediction import predict  # noqa: E402
from harness.scenarios import touch_free  # noqa: E402


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
    g = Guest(GuestConfig(kernel=kernel, qemu=qemu), start=start)
    try:
        g.launch()
        r = touch_free.run(g, mib=mib)
        predict(r)
    finally:
        g.shutdown()
    return {"start": start, "timings": r["timings"], "kernel": r["kernel"], "qemu": r["qemu"], "drop_mib": r["drop_mib"],
            "predicted_mib": r["predicted_mib"], "verdict": r["verdict"], "peers": peer_waits(r)}


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
    a = ap.parse_args()
    starts = ("restore", "boot") if a.start == "both" else (a.start,)
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
        "runs": runs,
    }
    text = json.dumps(res, indent=1)
    if a.out == "-":
        print(text)
    else:
        Path(a.out).write_text(text + "\n")
        print(f"[bench] written {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
