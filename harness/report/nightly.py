"""The nightly: run (a shard of) the full matrix, merge shards, results as JSON lines, a summary.

`ci/nightly` and `ci/merge` are thin wrappers over `python -m harness.report.nightly run|merge|plan`.
A night's folder holds:
  junit.xml      pytest's JUnit XML (merged over shards)
  results.jsonl  one `Row` per test and phase: measured vs predicted and every dimension
  run.json       what ran: name, commit, host, cells, shards, wall time, exit codes
  summary.md     the markdown summary (the workflow's job summary)
  artifacts/     guest logs of failed tests (conftest.py's guest_factory)
The rows come from the JUnit XML only (conftest.py's `report` fixture writes one property per
phase, the `guest_accel` fixture the accelerator and cell), so a shard and a merge of shards
produce the same file for the same tests.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from harness.cells import ALL_CELLS, Cell, parse_cells
from harness.paths import REPO

DURATIONS = REPO / "ci" / "durations.json"
OUTCOMES = ("passed", "failed", "error", "skipped")


@dataclass(frozen=True)
class Row:
    """One phase of one test (phase None: a test that records no phase). Fields the tests did not
    record are None: rows are read defensively, the lead's results may grow."""
    test: str
    phase: str | None
    outcome: str  # passed | failed | error | skipped
    duration_s: float
    message: str | None = None
    cell: str | None = None
    accel: str | None = None
    kernel: str | None = None
    qemu: str | None = None
    backend: str | None = None
    scenario: str | None = None
    memory_mib: int | None = None
    smp: int | None = None
    numa_nodes: int | None = None
    host_thp: bool | None = None
    reporting: bool | None = None
    reporting_order: int | None = None
    hugepage_mib: int | None = None
    start_mode: str | None = None
    metric: str | None = None
    freed_mib: float | None = None
    drop_mib: float | None = None
    reportable_mib: float | None = None
    predicted_mib: float | None = None
    predicted_lo_mib: float | None = None
    predicted_hi_mib: float | None = None
    verdict: str | None = None
    seconds_to_90pct: float | None = None
    predicted_seconds_to_90pct: float | None = None

    @property
    def key(self) -> str:
        return self.test if self.phase is None else f"{self.test} :: {self.phase}"

    @property
    def env(self) -> tuple:
        """What must be equal for two nights' figures to be compared like with like."""
        return (self.kernel, self.qemu, self.accel, self.backend, self.memory_mib, self.smp, self.numa_nodes,
                self.host_thp, self.reporting, self.reporting_order, self.hugepage_mib, self.start_mode, self.metric)

    @property
    def drop_error_mib(self) -> float | None:
        return _diff(self.drop_mib, self.predicted_mib)

    @property
    def t90_error_s(self) -> float | None:
        return _diff(self.seconds_to_90pct, self.predicted_seconds_to_90pct)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Row":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _diff(a, b) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isfinite(a) and math.isfinite(b):
        return round(a - b, 3)
    return None


_ROW_FIELDS = {f.name for f in fields(Row)}
_OWN = {"test", "phase", "outcome", "duration_s", "message", "cell"}  # what the JUnit testcase itself says


def rows_from_junit(xml_text: str) -> list[Row]:
    """Pure: pytest JUnit XML -> rows, one per recorded phase (or one per test without any)."""
    out = []
    for tc in ET.fromstring(xml_text).iter("testcase"):
        test = f"{tc.get('classname', '')}::{tc.get('name', '')}"
        outcome, message = "passed", None
        for tag, name in (("skipped", "skipped"), ("error", "error"), ("failure", "failed")):
            el = tc.find(tag)
            if el is not None:
                outcome, message = name, (el.get("message") or (el.text or "")).strip().splitlines()[:1]
                message = message[0][:300] if message else None
        props: dict[str, str] = {}
        phases: list[tuple[str, dict]] = []
        for p in tc.iter("property"):
            name, value = p.get("name", ""), p.get("value", "")
            if name.startswith("phase:"):
                try:
                    phases.append((name[6:], json.loads(value)))
                except ValueError:
                    continue  # a property we cannot read is not a measurement
            else:
                props[name] = value
        base = dict(test=test, outcome=outcome, duration_s=round(float(tc.get("time") or 0), 3), message=message,
                    cell=props.get("cell"), accel=props.get("accel"))
        if not phases:
            out.append(Row(phase=None, **base))
        for phase, fig in phases:
            extra = {k: v for k, v in fig.items() if k in _ROW_FIELDS and k not in _OWN}
            extra["accel"] = extra.get("accel") or base["accel"]
            out.append(Row(phase=phase, **{**base, **extra}))
    return out


def write_rows(path: Path, rows: Iterable[Row]) -> None:
    path.write_text("".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in rows))


def read_rows(path: Path) -> list[Row]:
    return [Row.from_json(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def merge_junit(paths: list[Path], dest: Path) -> None:
    """The shards' JUnit XML files as one (junitparser keeps every suite and property)."""
    from junitparser import JUnitXml

    merged = JUnitXml()
    for p in paths:
        merged += JUnitXml.fromfile(str(p))
    merged.write(str(dest), pretty=True)


def _fmt(v, nd=1) -> str:
    if v is None:
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def summary_markdown(meta: dict, rows: list[Row], extra: str = "") -> str:
    """Pure: the night in markdown: counts, failures, then every phase measured vs predicted."""
    tests: dict[str, str] = {}
    for r in rows:
        tests[r.test] = r.outcome
    counts = {o: sum(1 for v in tests.values() if v == o) for o in OUTCOMES}
    outside = [r for r in rows if r.verdict not in (None, "within")]
    lines = [f"# Nightly {meta.get('name', '?')}", "",
             f"{len(tests)} tests: " + ", ".join(f"{n} {o}" for o, n in counts.items()) +
             f"; {len(outside)} phases outside the prediction. Cells {', '.join(meta.get('cells') or ['all'])}; "
             f"accelerator {', '.join(sorted({r.accel for r in rows if r.accel})) or '-'}; "
             f"wall {_fmt(meta.get('wall_s'))} s; commit {meta.get('commit', '?')}.", ""]
    bad = [r for r in rows if r.outcome in ("failed", "error")]
    if bad:
        lines += ["## Failures", "", "| test | phase | outcome | message |", "|---|---|---|---|"]
        lines += [f"| {r.test} | {r.phase or '-'} | {r.outcome} | {(r.message or '').replace('|', '/')} |" for r in bad]
        lines.append("")
    if extra:
        lines += [extra, ""]
    lines += ["## Every phase", "",
              "| test | phase | kernel | QEMU | accel | backend | measured drop | predicted [lo, hi] | verdict "
              "| t90 measured / predicted (s) | test |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.phase is None:
            continue
        lines.append(f"| {r.test} | {r.phase} | {r.kernel} | {r.qemu} | {r.accel} | {r.backend} | {_fmt(r.drop_mib)} | "
                     f"{_fmt(r.predicted_mib)} [{_fmt(r.predicted_lo_mib)}, {_fmt(r.predicted_hi_mib)}] | {r.verdict} | "
                     f"{_fmt(r.seconds_to_90pct, 2)} / {_fmt(r.predicted_seconds_to_90pct, 3)} | {r.outcome} |")
    return "\n".join(lines) + "\n"


# ---- the nightly run and the merge (I/O) ----

def _git_commit() -> str:
    if os.environ.get("GITHUB_SHA"):  # a shard's container may have no git
        return os.environ["GITHUB_SHA"][:12]
    try:
        r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return r.stdout.strip() or "unknown"


def kernels_of(cells: frozenset[Cell] | None) -> list[str]:
    return sorted({c.kernel for c in cells} if cells else {k for k, _ in ALL_CELLS})


def cmd_run(a) -> int:
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cells = parse_cells(a.cells)
    py = sys.executable
    t_images = time.monotonic()
    # a shard builds only its own cells' images, before the workers start (QEMU 10.0 is fetched by the
    # first test that needs it)
    for k in kernels_of(cells):
        subprocess.run([py, "-m", "harness.cli", "image", "--kernel", k], check=True, stdout=subprocess.DEVNULL)
    junit = out / "junit.xml"
    cmd = [py, "-m", "pytest", "tests", "--matrix", "full", "-n", str(a.workers), "--dist", "worksteal",
           f"--junitxml={junit}", "-o", "junit_family=xunit1", "--durations-path", str(a.durations), "-p", "no:cacheprovider"]
    if a.cells:
        cmd += ["--cells", a.cells]
    if a.splits:
        cmd += ["--splits", str(a.splits), "--group", str(a.group), "--splitting-algorithm", "least_duration"]
    if a.store_durations:
        cmd += ["--store-durations"]
    cmd += a.pytest_args
    env = dict(os.environ, BALLOON_E2E_ARTIFACTS=str(out / "artifacts"))
    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print("[nightly] " + " ".join(cmd), file=sys.stderr, flush=True)
    rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
    meta = {"name": a.name, "started": started, "wall_s": round(time.monotonic() - t0, 1),
            "images_s": round(t0 - t_images, 1), "commit": _git_commit(),
            "host": platform.node(), "cells": sorted(str(c) for c in cells) if cells else None,
            "shards": [{"group": a.group, "splits": a.splits, "pytest_exit": rc}] if a.splits
            else [{"group": 1, "splits": 1, "pytest_exit": rc}],
            "pytest_args": a.pytest_args}
    (out / "run.json").write_text(json.dumps(meta, indent=1) + "\n")
    if not junit.exists():
        print(f"[nightly] pytest wrote no JUnit XML (exit {rc})", file=sys.stderr)
        return rc or 3
    finish(out, [out])
    print(f"[nightly] {out}: results.jsonl, summary.md; pytest exit {rc}, wall {meta['wall_s']} s", file=sys.stderr)
    return rc


def finish(out: Path, shard_dirs: list[Path]) -> list[Row]:
    """Merge shard folders into `out`: junit.xml, results.jsonl, run.json, summary.md, artifacts/."""
    import shutil

    junits = [d / "junit.xml" for d in shard_dirs if (d / "junit.xml").exists()]
    metas = [json.loads((d / "run.json").read_text()) for d in shard_dirs if (d / "run.json").exists()]
    if shard_dirs != [out]:
        merge_junit(junits, out / "junit.xml")
        for d in shard_dirs:
            if (d / "artifacts").is_dir():
                shutil.copytree(d / "artifacts", out / "artifacts", dirs_exist_ok=True)
    # by test; a test's phases stay in the order it ran them (cycle-2 before cycle-10)
    rows = sorted((r for j in junits for r in rows_from_junit(j.read_text())), key=lambda r: r.test)
    write_rows(out / "results.jsonl", rows)
    meta = merge_meta(metas)
    (out / "run.json").write_text(json.dumps(meta, indent=1) + "\n")
    (out / "summary.md").write_text(summary_markdown(meta, rows))
    return rows


def merge_meta(metas: list[dict]) -> dict:
    """Pure: the shards' run.json as one: the night's name, the slowest shard's wall time, every exit."""
    if not metas:
        return {"name": "unknown", "shards": []}
    names = sorted({m.get("name") for m in metas if m.get("name")})
    cells = sorted({c for m in metas for c in (m.get("cells") or [])})
    return {"name": names[0] if len(names) == 1 else "+".join(names), "started": min(m.get("started", "") for m in metas),
            "wall_s": max(m.get("wall_s") or 0 for m in metas),
            "images_s": max((m.get("images_s") or 0 for m in metas), default=0), "commit": metas[0].get("commit"),
            "host": ",".join(sorted({m.get("host", "?") for m in metas})), "cells": cells or None,
            "shards": [s for m in metas for s in m.get("shards", [])]}


def plan(durations: dict[str, float], test_cells: dict[str, str], shard_budget_s: float, max_shards: int = 8) -> list[dict]:
    """Pure: the workflow's matrix: per cell, as many shards as its stored durations need to fit the
    budget (tests without a stored duration count as the mean of the stored ones)."""
    known = [v for v in durations.values() if v > 0]
    mean = sum(known) / len(known) if known else 60.0
    per_cell: dict[str, float] = {}
    for test, cell in test_cells.items():
        per_cell[cell] = per_cell.get(cell, 0.0) + durations.get(test, mean)
    out = []
    for cell in sorted(per_cell):
        n = max(1, min(max_shards, math.ceil(per_cell[cell] / shard_budget_s)))
        out += [{"cell": cell, "splits": n, "group": g, "estimated_s": round(per_cell[cell] / n)} for g in range(1, n + 1)]
    return out


def cmd_plan(a) -> int:
    """Collect the full matrix, give each test its cell, print the shard matrix as JSON."""
    cells = parse_cells(a.cells) or parse_cells("all")
    test_cells: dict[str, str] = {}
    for c in sorted(cells):
        r = subprocess.run([sys.executable, "-m", "pytest", "tests", "--matrix", "full", "--collect-only", "-q",
                            "-p", "no:cacheprovider", "--cells", str(c)] + a.pytest_args,
                           cwd=REPO, capture_output=True, text=True)
        if r.returncode not in (0, 5):
            print(r.stdout[-3000:] + r.stderr[-3000:], file=sys.stderr)
            return 2
        test_cells.update({line.strip(): str(c) for line in r.stdout.splitlines() if "::" in line})
    durations = json.loads(Path(a.durations).read_text()) if Path(a.durations).exists() else {}
    p = plan(durations, test_cells, a.shard_budget)
    print(json.dumps({"include": p}))
    print(f"[plan] {len(test_cells)} tests in {len(cells)} cells -> {len(p)} shards", file=sys.stderr)
    return 0


def problems(rows: list[Row]) -> list[str]:
    """Pure: what makes a night red by itself: a failed or broken test, a verdict outside."""
    out = sorted({f"{r.test}: {r.outcome}" for r in rows if r.outcome in ("failed", "error")})
    return out + [f"{r.key}: verdict {r.verdict}" for r in rows if r.verdict not in (None, "within")]


def cmd_check(a) -> int:
    bad = problems(read_rows(Path(a.night) / "results.jsonl"))
    for line in bad:
        print(line)
    print(f"[check] {a.night}: {len(bad)} problem(s)", file=sys.stderr)
    return 1 if bad else 0


def cmd_merge(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dirs = [Path(d) for d in a.shards]
    rows = finish(out, dirs)
    print(f"[merge] {len(dirs)} shards -> {out}: {len(rows)} rows", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nightly")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run (a shard of) the full matrix into a night's folder")
    r.add_argument("--out", default=str(REPO / "results" / "nightly" / time.strftime("%Y%m%d-%H%M%S", time.gmtime())))
    r.add_argument("--name", default=time.strftime("%Y%m%d-%H%M%S", time.gmtime()), help="the night's name (all shards)")
    r.add_argument("--cells", default=None, help="kernel x QEMU cells, e.g. 6.1x7.2,6.12x10.0 (default all)")
    r.add_argument("--splits", type=int, default=0, help="shards (pytest-split by ci/durations.json)")
    r.add_argument("--group", type=int, default=1, help="this shard, 1..splits")
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--durations", default=str(DURATIONS))
    r.add_argument("--store-durations", action="store_true", help="update the durations file with this run's")
    r.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments (e.g. -k)")
    m = sub.add_parser("merge", help="merge shard folders into one night")
    m.add_argument("out")
    m.add_argument("shards", nargs="+")
    pl = sub.add_parser("plan", help="print the shard matrix (JSON) for the workflow")
    pl.add_argument("--cells", default=None)
    pl.add_argument("--durations", default=str(DURATIONS))
    pl.add_argument("--shard-budget", type=float, default=2400.0, help="seconds of tests per shard")
    pl.add_argument("pytest_args", nargs="*")
    c = sub.add_parser("check", help="exit 1 if a night has a failed test or a verdict outside its prediction")
    c.add_argument("night")
    a = p.parse_args(argv)
    return {"run": cmd_run, "merge": cmd_merge, "plan": cmd_plan, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
