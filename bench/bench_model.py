"""Benchmark of the reference model (harness/model): is it fast enough to run in every test?

Two measurements, each the best of --repeat runs (wall clock, one core):
  replay  the verdict path (harness/prediction.predict: the reference allocator runs the
          release from the before-the-release records, then every reporting pass, the three
          runs of the pcp_residue term and the judgement) on each stored real run in
          tests/data/release/ (2-3 GiB guests, 0.5-1.5 GiB freed). Goal < 1 s each.
  trace   1,000,000 trace operations on a fresh 64 GiB guest (tests/sim), reporting passes
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
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.model import ResidentMap  # noqa: E402
from harness.verdict import prediction  # noqa: E402
from tests.sim.synth import fresh_machine, mixed_trace  # noqa: E402
from tests.sim.trace import Simulation  # noqa: E402

RELEASES = ROOT / "tests" / "data" / "release"
GUEST_MIB = 65536
HELD_MIB = 32768
GOALS = {"replay_s": 1.0, "trace_s": 5.0}


def bench_replay(path: Path) -> dict:
    """One stored run through the verdict path, from its records as saved."""
    result = json.loads(path.read_text())
    t0, c0 = time.perf_counter(), time.process_time()
    prediction._MODEL_RUNS.clear()          # a fresh model run each time, as a new result gets
    prediction.predict(result)
    t1, c1 = time.perf_counter(), time.process_time()
    last = result["phases"][-1]
    return {"seconds": t1 - t0, "cpu_s": c1 - c0, "phases": len(result["phases"]),
            "freed_mib": last["freed_mib"], "predicted_mib": last["predicted_mib"], "verdict": result["verdict"]}


def make_trace(n_ops: int, seed: int = 2, fragment: float = 0.01) -> list:
    """n_ops ops over 600 s on the 64 GiB guest (tests.sim.synth.mixed_trace)."""
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

    replays = {}
    for path in sorted(RELEASES.glob("*.json")):
        if path.name.endswith((".trace.json", ".ftrace.json")):   # a run's kernel trace, stored beside it
            continue
        runs = [bench_replay(path) for _ in range(a.repeat)]
        best = min(runs, key=lambda x: x["seconds"])
        replays[path.stem] = {**{k: round(v, 4) if isinstance(v, float) else v for k, v in best.items()},
                              "all_s": [round(x["seconds"], 4) for x in runs],
                              "all_cpu_s": [round(x["cpu_s"], 4) for x in runs]}
    slowest = max(x["seconds"] for x in replays.values())
    t = time.perf_counter()
    ops = make_trace(a.ops)
    setup_trace = time.perf_counter() - t
    traces = [bench_trace(ops) for _ in range(a.repeat)]

    trace = min(traces, key=lambda x: x["seconds"])
    out = {
        "bench": "model",
        "python": platform.python_version(), "machine": platform.machine(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "repeat": a.repeat,
        "replay_stored_runs": {"runs": replays, "slowest_s": slowest, "goal_s": GOALS["replay_s"],
                               "ok": slowest < GOALS["replay_s"]},
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
    return 0 if out["replay_stored_runs"]["ok"] and out["trace_1m"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
