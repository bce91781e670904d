"""Benchmark of the reference model (harness/model): is it fast enough to run in every test?

Two measurements, each the best of --repeat runs (wall clock, one core):
  replay  a synthesized 64 GiB guest (q35: 2 GiB DMA32 + 62 GiB Normal) with a
          fragmented heap holding 32 GiB: its before/after snapshots are rendered
          as /proc text, parsed, laid out, and every reporting pass run until idle
          (snapshot_from_texts x2 + predict_touch_free + to_json). Goal < 1 s.
  trace   1,000,000 trace operations on a fresh 64 GiB guest, reporting passes
          interleaved, per-cpu lists and host residency (THP granules) on: 59% touches
          of 1-64 pages, 35% frees of a random live tag, 5% THP touches, 1% fragmenting
          frees (keep every other page). Small random ops are the expensive case: a
          touch takes its pages from several recently freed tags on the pcp list, and
          the cost is per (pfn, n) run, not per op. Goal < 5 s.
Both wall and CPU seconds are recorded (all_s, all_cpu_s: every repeat) with the load
average: the machine is shared with QEMU guests, so wall time can exceed CPU time.

Writes JSON to bench/results/model.json (or --out -, stdout).
    .venv/bin/python bench/bench_model.py [--repeat 3] [--ops 1000000] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.model import (Free, Register, ResidentMap, Simulation,  # noqa: E402
                           fresh_machine, predict_touch_free, snapshot_of, touch)
from harness.model.synth import mixed_trace  # noqa: E402
from harness.snapshot import (render_buddyinfo, render_pagetypeinfo, render_vmstat,  # noqa: E402
                              render_zoneinfo, snapshot_from_texts)

GUEST_MIB = 65536
HELD_MIB = 32768
GOALS = {"replay_s": 1.0, "trace_s": 5.0}


def _texts(snap) -> dict:
    return {"zoneinfo": render_zoneinfo(list(snap.zones), snap.kernel),
            "pagetypeinfo": render_pagetypeinfo(snap.pagetypes),
            "buddyinfo": render_buddyinfo(snap.pagetypes), "vmstat": render_vmstat(snap.vmstat)}


def make_64g_snapshots(seed: int = 1):
    """before/after /proc texts of a 64 GiB guest: a fragmented heap, then 32 GiB held and freed."""
    m = fresh_machine("6.1", GUEST_MIB, smp=8)
    sim = Simulation(m, threshold=9)
    rng = random.Random(seed)
    t = 100.0
    sim.run([Register(0.0)], until=0.0)
    for i in range(3000):                  # a long-lived heap with holes
        sim.run([touch(t, f"h{i}", rng.choice([0.05, 0.5, 2.0, 8.0]))], until=t)
        t += 0.001
    for i in range(0, 3000, 3):
        sim.run([Free(t, f"h{i}")], until=t)
        t += 0.001
    sim.run([touch(t, "work", HELD_MIB)], until=t)
    sim.run([], until=None)                # boot-time reporting settles
    before = _texts(snapshot_of(m, "6.1", 9, smp=8))
    t = sim.result.passes[-1].t_end + 10
    sim.run([Free(t, "work")], until=t)
    after = _texts(snapshot_of(m, "6.1", 9, smp=8))
    return before, after


def bench_replay(before: dict, after: dict) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    b = snapshot_from_texts(**before, kernel="6.1.0-50-amd64", reporting_order=9)
    a = snapshot_from_texts(**after, kernel="6.1.0-50-amd64", reporting_order=9)
    t1 = time.perf_counter()
    p = predict_touch_free(b, a, kernel=a.kernel, order=9, freed_mib=HELD_MIB, noise_mib=5.0)
    j = p.to_json()
    t2, c2 = time.perf_counter(), time.process_time()
    return {"seconds": t2 - t0, "cpu_s": c2 - c0, "parse_s": t1 - t0, "model_s": t2 - t1,
            "free_blocks": sum(sum(z.free) for z in a.buddy), "passes": len(p.passes),
            "reports": sum(x["reports"] for x in j["passes"]), "expected_mib": j["expected_mib"],
            "seconds_to_90pct": j["seconds_to_90pct"],
            "first_pass_mib": j["passes"][0]["reported_mib"] if j["passes"] else 0.0}


def make_trace(n_ops: int, seed: int = 2, fragment: float = 0.01) -> list:
    """n_ops ops over 600 s on the 64 GiB guest (harness.model.synth.mixed_trace)."""
    return mixed_trace(n_ops, GUEST_MIB, seed=seed, fragment=fragment)


def bench_trace(ops: list) -> dict:
    m = fresh_machine("6.1", GUEST_MIB, smp=8)
    res = ResidentMap(m.end_pfn)
    sim = Simulation(m, threshold=9, resident=res)
    t0, c0 = time.perf_counter(), time.process_time()
    r = sim.run(ops, until=None)
    t1, c1 = time.perf_counter(), time.process_time()
    return {"seconds": t1 - t0, "cpu_s": c1 - c0, "ops": len(ops), "us_per_op": (t1 - t0) / len(ops) * 1e6,
            "passes": len(r.passes), "reports": sum(len(p.reports) for p in r.passes),
            "reported_mib": round(r.reported_mib(), 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "model.json"))
    a = ap.parse_args(argv)

    t = time.perf_counter()
    before, after = make_64g_snapshots()
    setup_snap = time.perf_counter() - t
    replays = [bench_replay(before, after) for _ in range(a.repeat)]
    t = time.perf_counter()
    ops = make_trace(a.ops)
    setup_trace = time.perf_counter() - t
    traces = [bench_trace(ops) for _ in range(a.repeat)]

    replay = min(replays, key=lambda x: x["seconds"])
    trace = min(traces, key=lambda x: x["seconds"])
    out = {
        "bench": "model",
        "python": platform.python_version(), "machine": platform.machine(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "repeat": a.repeat,
        "replay_64gib": {**{k: round(v, 4) if isinstance(v, float) else v for k, v in replay.items()},
                         "goal_s": GOALS["replay_s"], "ok": replay["seconds"] < GOALS["replay_s"],
                         "all_s": [round(x["seconds"], 4) for x in replays],
                         "all_cpu_s": [round(x["cpu_s"], 4) for x in replays], "setup_s": round(setup_snap, 2)},
        "trace_1m": {**{k: round(v, 4) if isinstance(v, float) else v for k, v in trace.items()},
                     "goal_s": GOALS["trace_s"], "ok": trace["seconds"] < GOALS["trace_s"],
                     "all_s": [round(x["seconds"], 4) for x in traces],
                     "all_cpu_s": [round(x["cpu_s"], 4) for x in traces], "setup_s": round(setup_trace, 2)},
    }
    text = json.dumps(out, indent=2)
    if a.out == "-":
        print(text)
    else:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
        print(text)
    return 0 if out["replay_64gib"]["ok"] and out["trace_1m"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
