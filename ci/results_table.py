#!/usr/bin/env python3
"""JUnit XML (pytest --junitxml) -> a Markdown table of every measured phase vs its prediction.

usage: ci/results_table.py results.xml [more.xml ...]
"""
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def rows(paths):
    for path in paths:
        for tc in ET.parse(path).getroot().iter("testcase"):
            failed = tc.find("failure") is not None or tc.find("error") is not None
            for p in tc.iter("property"):
                if p.get("name", "").startswith("phase:"):
                    yield tc.get("name"), p.get("name")[6:], json.loads(p.get("value")), failed


def _free(fm: dict | None) -> str:
    if not fm or fm.get("measured_mib") is None:
        return "-"
    return f"{fm['measured_mib']} / {fm['expected_mib']} [{fm['lo_mib']}, {fm['hi_mib']}]"


def _terms(terms: dict | None) -> str:
    """The interval's terms that are not nought: name [lo, hi] MiB."""
    return ", ".join(f"{k} [{lo:+g}, {hi:+g}]" for k, (lo, hi) in (terms or {}).items() if lo or hi) or "-"


def _differences(d: dict | None) -> str:
    """The blocks only one side has, by the term each is put down to (the layout's `differences`)."""
    return f" ({', '.join(f'{k} {v}' for k, v in d.items())})" if d else ""


def main(paths):
    if not paths or paths[0] in ("-h", "--help"):
        sys.exit(__doc__.strip().splitlines()[-1])
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        sys.exit(f"results_table: no such file: {missing[0]}")
    print("| test | phase | kernel | QEMU | freed | measured drop | predicted [lo, hi] | width | verdict "
          "| t90 measured / predicted (s) | blocks >= order: real / predicted / matched "
          "| guest free MiB (balloon stats): measured / predicted [lo, hi] | terms (MiB) | phase end (s) | test |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, phase, r, failed in rows(paths):
        width = r["predicted_hi_mib"] - r["predicted_lo_mib"]
        # the figure the verdict is on: the guest RAM mapping for hugetlbfs (outside the process Rss)
        drop = r.get("ram_drop_mib") if r.get("metric") == "mapping" else r["drop_mib"]
        print(f"| {name} | {phase} | {r['kernel']} | {r['qemu']} | {r['freed_mib']} | {drop} | "
              f"{r['predicted_mib']} [{r['predicted_lo_mib']}, {r['predicted_hi_mib']}] | {width:.1f} | {r['verdict']} | "
              f"{r.get('measured_t90_s', r['seconds_to_90pct'])} / {r['predicted_seconds_to_90pct']} | "
              f"{r.get('layout_real')} / {r.get('layout_predicted')} / {r.get('layout_matched')}"
              f"{_differences(r.get('layout_differences'))}"
              f"{f' ({len(u)} unexplained)' if (u := r.get('layout_unexplained')) else ''}"
              f"{f' (beyond: {len(b)})' if (b := r.get('layout_beyond')) else ''} | "
              f"{_free(r.get('free_memory'))} | {_terms(r.get('terms'))} | {r.get('end_s', '-')} | "
              f"{'FAILED' if failed else 'passed'} |")


if __name__ == "__main__":
    main(sys.argv[1:])
