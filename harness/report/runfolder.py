"""One folder per run, results/<time>-<scenario>/, holding all of its evidence.

    command.txt        the balloon-e2e command line
    qemu-argv.txt      QEMU's argv (harness/vm/guest.py)      qemu.log, console.log, qmp.jsonl (the QMP transcript)
    samples.csv        QEMU RSS (less TCG's translation cache), the RAM mapping and the cache every 0.1 s, written as sampled (harness/measure/hostmem.py)
    phases/NN-*.json   each phase with its snapshots and per-block captures, written when measured
    prediction.json    each phase's prediction with its terms and the verdict
    plot.png, result.json, cli.log (everything logged, tracebacks of failures included)

result.json says `"complete": true` only for a run that reached its verdict; a run
cut short (Ctrl-C, a failure, bad input found on the way) keeps its folder and its
result.json says `"complete": false` with the status and the error.
"""
from __future__ import annotations

import json
import time
from pathlib import Path


def folder_name(when: float, scenario: str) -> str:
    """Pure: the folder's name, sortable by time."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(when)) + f"-{scenario}"


def create(out: Path, scenario: str, when: float | None = None) -> Path:
    """A new, empty run folder under `out` (a suffix -2, -3, ... if the second is taken)."""
    base = folder_name(time.time() if when is None else when, scenario)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        d = out / (base if i == 1 else f"{base}-{i}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder name for {base} in {out}")


def write_json(folder: Path, name: str, obj) -> Path:
    """Written whole or not at all: a reader never sees half a file."""
    path = folder / name
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    tmp.replace(path)
    return path


def incomplete(status: str, error: str, exit_code: int, folder: Path, started: float) -> dict:
    """The result record of a run that did not reach its verdict, with what its folder kept."""
    kept = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    return {"complete": False, "status": status, "error": error, "exit_code": exit_code,
            "folder": str(folder), "seconds": round(time.time() - started, 1), "kept": kept}
