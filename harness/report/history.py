"""Nights kept in SQLite, and what changed from one night to the next.

`balloon-e2e history ingest|show|page` and `balloon-e2e compare OLD NEW`. The database
(stdlib sqlite3, STRICT tables) holds runs, environments, tests and phases; one writer, the
nightly's aggregating job. `compare` works on two nights from the database, two results files
(results.jsonl or a nightly folder), or two `balloon-e2e run` results (result.json or its folder).

What counts as a regression (exit 1):
  new_failure     a test that passed (or was absent) now fails or errors
  now_outside     a phase measured within its prediction is now outside it
  drop_error      (drop - predicted) moved away from zero beyond its noise
  t90_error       (t90 - predicted t90) moved away from zero beyond its noise
  slower          the measured t90 grew beyond its noise
"Beyond its noise" is a robust z-score, (x - median) / max(1.4826 MAD, floor), over OLD and the
nights before it in the same environment (full kernel and QEMU versions, accelerator, backend,
shape, start mode): the figures are compared against the model, like with like. The floor is the
measured noise, so one or two quiet nights cannot make a 1 MiB wobble look like a regression.
"""
from __future__ import annotations

import json
import sqlite3
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from harness.errors import UserError
from harness.report.nightly import Row, read_rows

# Noise floors, measured (MEASURED.md): 10 repeats of touch-free on this machine gave
# measured - predicted within -4.4..0.0 MiB and the model's own rss_noise term is +-5 MiB
# (idle RSS noise 0.0-2.3 MiB); t90 spread 8.13-8.29 s with the sampler's 0.1 s period.
DROP_FLOOR_MIB = 5.0
T90_FLOOR_S = 0.25
Z_LIMIT = 3.5  # Iglewicz & Hoaglin's cut for the modified z-score
WINDOW = 10  # recent nights in the baseline

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, started TEXT, commit_id TEXT, host TEXT,
  source TEXT, meta TEXT NOT NULL DEFAULT '{}') STRICT;
CREATE TABLE IF NOT EXISTS environments (
  id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, kernel TEXT, qemu TEXT, accel TEXT, backend TEXT,
  shape TEXT, start_mode TEXT) STRICT;
CREATE TABLE IF NOT EXISTS tests (
  id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, name TEXT NOT NULL,
  outcome TEXT NOT NULL, duration_s REAL, message TEXT, cell TEXT, accel TEXT, row TEXT NOT NULL,
  UNIQUE (run_id, name)) STRICT;
CREATE TABLE IF NOT EXISTS phases (
  id INTEGER PRIMARY KEY, test_id INTEGER NOT NULL REFERENCES tests(id) ON DELETE CASCADE,
  env_id INTEGER NOT NULL REFERENCES environments(id), phase TEXT NOT NULL, freed_mib REAL, drop_mib REAL,
  predicted_mib REAL, predicted_lo_mib REAL, predicted_hi_mib REAL, verdict TEXT, seconds_to_90pct REAL,
  predicted_seconds_to_90pct REAL, row TEXT NOT NULL, UNIQUE (test_id, phase)) STRICT;
CREATE INDEX IF NOT EXISTS phases_env ON phases (env_id);
"""


@dataclass(frozen=True)
class Night:
    name: str
    rows: tuple[Row, ...]
    started: str | None = None
    commit: str | None = None
    source: str | None = None

    def by_key(self) -> dict[str, Row]:
        return {r.key: r for r in self.rows}

    def outcomes(self) -> dict[str, str]:
        return {r.test: r.outcome for r in self.rows}


# ---- loading a night from files ----

def rows_from_result(result: dict, test: str | None = None) -> list[Row]:
    """Pure: a `balloon-e2e run` result (result.json) -> one row per phase. A single run has no
    pytest outcome: it passed if it ran; its verdicts say within or outside."""
    test = test or f"balloon-e2e run {result.get('scenario', '?')}"
    names = set(Row.__dataclass_fields__)
    out = []
    for ph in result.get("phases") or [result]:
        d = {k: ph.get(k, result.get(k)) for k in names if k in ph or k in result}
        d.update(test=test, phase=str(ph.get("phase", "main")), outcome="passed", duration_s=0.0,
                 message=None, cell=None)
        out.append(Row.from_json(d))
    return out


def load(path: str | Path) -> Night:
    """A night from a nightly folder, a results.jsonl, a result.json or a run folder holding one."""
    p = Path(path)
    if p.is_dir():
        for name in ("results.jsonl", "result.json"):
            if (p / name).exists():
                return load(p / name)
        jsons = sorted(p.glob("*.json"))
        if len(jsons) == 1:
            return load(jsons[0])
        raise UserError(f"{p}: no results.jsonl or result.json in it")
    if not p.exists():
        raise UserError(f"{p}: no such file")
    meta = {}
    if (p.parent / "run.json").exists() and p.suffix == ".jsonl":
        meta = json.loads((p.parent / "run.json").read_text())
    try:
        if p.suffix == ".jsonl":
            rows = read_rows(p)
            name = meta.get("name") or p.parent.name
        else:
            result = json.loads(p.read_text())
            if not isinstance(result, dict):
                raise ValueError("not a JSON object")
            rows = rows_from_result(result)
            name = p.parent.name if p.name == "result.json" else p.stem
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{p}: not a results file ({e.__class__.__name__}: {e})") from None
    return Night(name=name, rows=tuple(rows), started=meta.get("started"), commit=meta.get("commit"), source=str(p))


# ---- the database ----

def connect(db: str | Path) -> sqlite3.Connection:
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(db))
    con.execute("PRAGMA foreign_keys = ON")
    con.executescript(SCHEMA)
    return con


def _env_id(con: sqlite3.Connection, r: Row) -> int:
    key = json.dumps(r.env)
    shape = json.dumps({"memory_mib": r.memory_mib, "smp": r.smp, "numa_nodes": r.numa_nodes,
                        "host_thp": r.host_thp, "hugepage_mib": r.hugepage_mib})
    con.execute("INSERT OR IGNORE INTO environments (key, kernel, qemu, accel, backend, shape, start_mode) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (key, r.kernel, r.qemu, r.accel, r.backend, shape, r.start_mode))
    return con.execute("SELECT id FROM environments WHERE key = ?", (key,)).fetchone()[0]


def ingest(con: sqlite3.Connection, night: Night, meta: dict | None = None) -> bool:
    """Store a night; one of the same name is replaced. True if it replaced one."""
    with con:
        replaced = con.execute("DELETE FROM runs WHERE name = ?", (night.name,)).rowcount > 0
        run_id = con.execute("INSERT INTO runs (name, started, commit_id, host, source, meta) VALUES (?, ?, ?, ?, ?, ?)",
                             (night.name, night.started, night.commit, (meta or {}).get("host"), night.source,
                              json.dumps(meta or {}))).lastrowid
        test_ids: dict[str, int] = {}
        for r in night.rows:
            if r.test not in test_ids:
                test_ids[r.test] = con.execute(
                    "INSERT INTO tests (run_id, name, outcome, duration_s, message, cell, accel, row) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, r.test, r.outcome, r.duration_s, r.message, r.cell, r.accel,
                     json.dumps(r.to_json()))).lastrowid
            if r.phase is not None:
                con.execute("INSERT OR REPLACE INTO phases (test_id, env_id, phase, freed_mib, drop_mib, predicted_mib, "
                            "predicted_lo_mib, predicted_hi_mib, verdict, seconds_to_90pct, predicted_seconds_to_90pct, row) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (test_ids[r.test], _env_id(con, r), r.phase, r.freed_mib, r.drop_mib, r.predicted_mib,
                             r.predicted_lo_mib, r.predicted_hi_mib, r.verdict, r.seconds_to_90pct,
                             r.predicted_seconds_to_90pct, json.dumps(r.to_json())))
    return replaced


def night_names(con: sqlite3.Connection) -> list[str]:
    """Oldest first: by start time where known, then by when they were stored."""
    return [n for (n,) in con.execute("SELECT name FROM runs ORDER BY coalesce(started, ''), id")]


def night(con: sqlite3.Connection, name: str) -> Night:
    run = con.execute("SELECT id, started, commit_id, source FROM runs WHERE name = ?", (name,)).fetchone()
    if run is None:
        raise UserError(f"no night {name!r} in the history (balloon-e2e history show lists them)")
    rows = []
    for tid, trow in con.execute("SELECT id, row FROM tests WHERE run_id = ? ORDER BY name", (run[0],)).fetchall():
        phases = [Row.from_json(json.loads(p)) for (p,) in
                  con.execute("SELECT row FROM phases WHERE test_id = ? ORDER BY id", (tid,))]
        rows += phases or [Row.from_json(json.loads(trow))]
    return Night(name=name, rows=tuple(rows), started=run[1], commit=run[2], source=run[3])


def nights_before(con: sqlite3.Connection, name: str, window: int = WINDOW) -> list[Night]:
    """The `window` nights stored before `name` (oldest first); all the latest if `name` is not stored."""
    names = night_names(con)
    upto = names[:names.index(name)] if name in names else names
    return [night(con, n) for n in upto[-window:]]


# ---- comparing nights (pure) ----

@dataclass(frozen=True)
class Finding:
    kind: str
    key: str
    regression: bool
    detail: str
    old: float | str | None = None
    new: float | str | None = None
    z: float | None = None


@dataclass(frozen=True)
class Comparison:
    old: str
    new: str
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    compared_phases: int = 0

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.regression]


def robust_z(x: float, baseline: list[float], floor: float) -> float:
    """(x - median) / max(1.4826 MAD, floor): one outlier night cannot widen it, the floor keeps
    a run of identical nights from making any change infinite."""
    med = statistics.median(baseline)
    mad = statistics.median(abs(v - med) for v in baseline)
    return (x - med) / max(1.4826 * mad, floor)


def _grew(metric: str, x: float | None, base: list[float], floor: float, key: str, unit: str,
          away_from_zero: bool) -> Finding | None:
    if x is None or not base:
        return None
    z = robust_z(x, base, floor)
    med = statistics.median(base)
    worse = abs(x) > abs(med) if away_from_zero else x > med
    if abs(z) > Z_LIMIT and worse:
        return Finding(metric, key, True, f"{x:+.2f} {unit} vs median {med:+.2f} over {len(base)} night(s), "
                                          f"z {z:+.1f} (noise floor {floor} {unit})", round(med, 3), x, round(z, 2))
    return None


def compare(old: Night, new: Night, history: Iterable[Night] = ()) -> Comparison:
    """What changed from OLD to NEW. `history`: earlier nights (oldest first) that join OLD in
    each case's baseline when they ran it in the same environment."""
    baseline_nights = [n for n in history if n.name not in (old.name, new.name)][-(WINDOW - 1):] + [old]
    old_rows, new_rows = old.by_key(), new.by_key()
    old_out = old.outcomes()
    findings: list[Finding] = []
    seen_tests = set()
    compared = 0
    for key, r in new_rows.items():
        if r.test not in seen_tests:
            seen_tests.add(r.test)
            before = old_out.get(r.test)
            if r.outcome in ("failed", "error") and before not in ("failed", "error"):
                findings.append(Finding("new_failure", r.test, True,
                                        f"{before or 'absent'} -> {r.outcome}: {r.message or ''}".strip(), before, r.outcome))
            elif before in ("failed", "error") and r.outcome == "passed":
                findings.append(Finding("fixed", r.test, False, f"{before} -> passed", before, r.outcome))
        o = old_rows.get(key)
        if r.phase is None or o is None or o.phase is None:
            continue
        if r.verdict not in (None, "within") and o.verdict == "within":
            findings.append(Finding("now_outside", key, True,
                                    f"drop {r.drop_mib} MiB outside [{r.predicted_lo_mib}, {r.predicted_hi_mib}] "
                                    f"(was within: {o.drop_mib} in [{o.predicted_lo_mib}, {o.predicted_hi_mib}])",
                                    o.verdict, r.verdict))
        if r.env != o.env:
            findings.append(Finding("env_changed", key, False, f"{_env_text(o)} -> {_env_text(r)}: figures not compared"))
            continue
        same = [n.by_key().get(key) for n in baseline_nights]
        same = [b for b in same if b is not None and b.env == r.env and b.outcome != "skipped"]
        if r.outcome == "skipped":
            continue
        compared += 1
        for f in (
            _grew("drop_error", r.drop_error_mib, [b.drop_error_mib for b in same if b.drop_error_mib is not None],
                  DROP_FLOOR_MIB, key, "MiB", True),
            _grew("t90_error", r.t90_error_s, [b.t90_error_s for b in same if b.t90_error_s is not None],
                  T90_FLOOR_S, key, "s", True),
            _grew("slower", r.seconds_to_90pct, [b.seconds_to_90pct for b in same if b.seconds_to_90pct is not None],
                  T90_FLOOR_S, key, "s", False),
        ):
            if f:
                findings.append(f)
    for key in old_rows.keys() - new_rows.keys():
        findings.append(Finding("missing", key, False, "in OLD, not in NEW"))
    return Comparison(old.name, new.name, tuple(findings), compared)


def _env_text(r: Row) -> str:
    return f"{r.kernel} / QEMU {r.qemu} / {r.accel} / {r.backend}"


def comparison_markdown(c: Comparison) -> str:
    head = (f"## Compared with {c.old}\n\n{c.compared_phases} phases compared; "
            f"{len(c.regressions)} regression(s), {len(c.findings) - len(c.regressions)} other change(s).\n")
    if not c.findings:
        return head
    lines = [head, "| | kind | case | detail |", "|---|---|---|---|"]
    for f in sorted(c.findings, key=lambda f: (not f.regression, f.kind, f.key)):
        lines.append(f"| {'REGRESSION' if f.regression else 'info'} | {f.kind} | {f.key} | {f.detail.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


# ---- the command line (hooked into harness/cli.py) ----

def default_db() -> Path:
    from harness.paths import cache_dir
    return cache_dir() / "history.sqlite"


def add_parsers(sub) -> None:
    import argparse

    dbp = argparse.ArgumentParser(add_help=False)
    dbp.add_argument("--db", default=None, help="the SQLite file (default: history.sqlite in the user's cache, "
                                                "~/.cache/balloon-e2e or $BALLOON_E2E_CACHE)")
    h = sub.add_parser("history", help="nights kept in SQLite: ingest, show, page")
    hs = h.add_subparsers(dest="history_cmd", required=True, parser_class=type(h))
    i = hs.add_parser("ingest", parents=[dbp], help="store nights: nightly folders, results.jsonl or result.json files")
    i.add_argument("paths", nargs="+")
    i.add_argument("--name", default=None, help="the night's name (one path only; default from run.json or the folder)")
    s = hs.add_parser("show", parents=[dbp], help="the nights stored, or one case's figures night by night")
    s.add_argument("--case", default=None, help="a substring of a test id (and phase): its trend")
    pg = hs.add_parser("page", parents=[dbp], help="write the static HTML page of a night (with trends from the history)")
    pg.add_argument("night", help="a night's name in the history, or its folder / results file")
    pg.add_argument("--out", required=True)
    c = sub.add_parser("compare", parents=[dbp], help="what changed from OLD to NEW; exit 1 on a regression")
    c.add_argument("old", help="a night's name in the history, a nightly folder, results.jsonl, result.json or run "
                               "folder; `previous`: the night stored before NEW")
    c.add_argument("new")
    c.add_argument("--json", action="store_true")
    c.add_argument("--markdown", default=None, metavar="FILE", help="also write the findings as markdown")


def _resolve(con: sqlite3.Connection | None, what: str) -> Night:
    if Path(what).exists():
        return load(what)
    if con is None:
        raise UserError(f"{what}: no such file, and no history database to look the night up in")
    return night(con, what)


def dispatch(a) -> int:
    db = Path(a.db) if a.db else default_db()
    if a.cmd == "compare":
        con = connect(db) if (a.db or db.exists()) else None
        new = _resolve(con, a.new)
        if a.old == "previous":  # the night stored before NEW (the workflow's aggregate job)
            before = nights_before(con, new.name, 1) if con else []
            if not before:
                print(f"compare: no night before {new.name} in the history: nothing to compare")
                return 0
            old = before[-1]
        else:
            old = _resolve(con, a.old)
        hist = nights_before(con, old.name) if con else []
        c = compare(old, new, hist)
        if a.markdown:
            Path(a.markdown).write_text(comparison_markdown(c))
        if a.json:
            print(json.dumps({"old": c.old, "new": c.new, "compared_phases": c.compared_phases,
                              "findings": [f.__dict__ for f in c.findings]}))
        else:
            print(f"compare {c.old} -> {c.new}: {c.compared_phases} phases compared, "
                  f"{len(c.regressions)} regression(s)")
            for f in sorted(c.findings, key=lambda f: (not f.regression, f.kind, f.key)):
                print(f"  {'REGRESSION' if f.regression else 'info':<10} {f.kind:<12} {f.key}: {f.detail}")
        return 1 if c.regressions else 0
    con = connect(db)
    if a.history_cmd == "ingest":
        if a.name and len(a.paths) != 1:
            raise UserError("--name needs exactly one path")
        for p in a.paths:
            n = load(p)
            if a.name:
                n = Night(a.name, n.rows, n.started, n.commit, n.source)
            meta_file = (Path(p) if Path(p).is_dir() else Path(p).parent) / "run.json"
            meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
            replaced = ingest(con, n, meta)
            print(f"{'replaced' if replaced else 'stored'} night {n.name}: {len({r.test for r in n.rows})} tests, "
                  f"{sum(r.phase is not None for r in n.rows)} phases ({db})")
        return 0
    if a.history_cmd == "show":
        return _show(con, a.case)
    if a.history_cmd == "page":
        from harness.report.nightly_page import render
        n = _resolve(con, a.night)
        Path(a.out).write_text(render(n, nights_before(con, n.name) + [n]))
        print(a.out)
        return 0
    return 2


def _show(con: sqlite3.Connection, case: str | None) -> int:
    if case is None:
        print(f"{'night':<24} {'started':<21} {'commit':<13} {'tests':>5} {'failed':>6} {'phases':>6} {'outside':>7}")
        for name in night_names(con):
            n = night(con, name)
            tests = n.outcomes()
            print(f"{name:<24} {n.started or '-':<21} {n.commit or '-':<13} {len(tests):>5} "
                  f"{sum(o in ('failed', 'error') for o in tests.values()):>6} "
                  f"{sum(r.phase is not None for r in n.rows):>6} "
                  f"{sum(r.verdict not in (None, 'within') for r in n.rows):>7}")
        return 0
    print(f"{'night':<24} {'outcome':<8} {'drop':>8} {'predicted':>9} {'error':>7} {'t90':>6} {'t90 pred':>8}  case")
    for name in night_names(con):
        for r in night(con, name).rows:
            if case in r.key and r.phase is not None:
                print(f"{name:<24} {r.outcome:<8} {_num(r.drop_mib):>8} {_num(r.predicted_mib):>9} "
                      f"{_num(r.drop_error_mib):>7} {_num(r.seconds_to_90pct):>6} {_num(r.predicted_seconds_to_90pct):>8}  {r.key}")
    return 0


def _num(v) -> str:
    return "-" if v is None else f"{v:g}"
