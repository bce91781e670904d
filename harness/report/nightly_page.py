"""One static HTML page per night: the matrix as a table, each case's plot, trends from the history.

Pure (rows in, a string out) and self-contained: inline CSS and SVG, no script, no fetch, so it
renders the same from an artifact, a file:// URL or a mail. Each phase's plot puts the measured
drop on the model's interval; the trend is (drop - predicted) night by night, zero marked.
"""
from __future__ import annotations

import html

from harness.report.history import Night
from harness.report.nightly import Row

HEADER_BG = "#1f4e79"  # tests/unit/test_nightly_page.py finds the table in a screenshot by this colour
WITHIN_BG = "#c6efce"
OUTSIDE_BG = "#ffc7ce"

CSS = f"""
body {{ font: 13px/1.3 sans-serif; margin: 16px; color: #111; background: #fff; }}
table#matrix {{ border-collapse: collapse; }}
#matrix th {{ background: {HEADER_BG}; color: #fff; padding: 6px 8px; text-align: left; }}
#matrix td {{ border-bottom: 1px solid #ddd; padding: 3px 8px; white-space: nowrap; }}
td.within {{ background: {WITHIN_BG}; }}
td.outside, td.failed, td.error {{ background: {OUTSIDE_BG}; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
"""


def _e(v) -> str:
    return html.escape("-" if v is None else str(v))


def _n(v, nd=1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def interval_svg(r: Row, w: int = 160, h: int = 22) -> str:
    """The measured drop (dot) on the predicted interval (bar) with the prediction (tick)."""
    vals = [v for v in (r.drop_mib, r.predicted_mib, r.predicted_lo_mib, r.predicted_hi_mib) if v is not None]
    if r.drop_mib is None or len(vals) < 2:
        return ""
    lo, hi = min(vals), max(vals)
    pad = max((hi - lo) * 0.1, 1.0)
    lo, hi = lo - pad, hi + pad
    x = lambda v: round((v - lo) / (hi - lo) * (w - 4) + 2, 1)  # noqa: E731
    parts = [f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="measured vs predicted">']
    if r.predicted_lo_mib is not None and r.predicted_hi_mib is not None:
        parts.append(f'<rect x="{x(r.predicted_lo_mib)}" y="7" width="{max(x(r.predicted_hi_mib) - x(r.predicted_lo_mib), 1)}"'
                     f' height="8" fill="#bbb"/>')
    if r.predicted_mib is not None:
        parts.append(f'<line x1="{x(r.predicted_mib)}" x2="{x(r.predicted_mib)}" y1="3" y2="19" stroke="#000"/>')
    colour = "#1a7f37" if r.verdict == "within" else "#c00"
    parts.append(f'<circle cx="{x(r.drop_mib)}" cy="11" r="4" fill="{colour}"><title>measured {r.drop_mib} MiB, '
                 f'predicted {r.predicted_mib} [{r.predicted_lo_mib}, {r.predicted_hi_mib}]</title></circle></svg>')
    return "".join(parts)


def trend_svg(errors: list[float | None], w: int = 120, h: int = 22) -> str:
    """(drop - predicted) over the nights, oldest left; the grey line is zero."""
    pts = [(i, e) for i, e in enumerate(errors) if e is not None]
    if len(pts) < 2:
        return ""
    span = max(max(abs(e) for _, e in pts), 5.0)
    n = max(len(errors) - 1, 1)
    xy = " ".join(f"{round(i / n * (w - 4) + 2, 1)},{round(h / 2 - e / span * (h / 2 - 2), 1)}" for i, e in pts)
    return (f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="error trend">'
            f'<line x1="0" x2="{w}" y1="{h / 2}" y2="{h / 2}" stroke="#ccc"/>'
            f'<polyline points="{xy}" fill="none" stroke="#1f4e79" stroke-width="1.5"/>'
            f'<title>drop - predicted, MiB: {", ".join(_n(e) for e in errors)}</title></svg>')


def render(night: Night, trend_nights: list[Night] | None = None) -> str:
    """The page of `night`; `trend_nights` (oldest first, `night` last) give each case's trend."""
    trend_nights = trend_nights or [night]
    by_night = [n.by_key() for n in trend_nights]
    tests = night.outcomes()
    failed = sum(o in ("failed", "error") for o in tests.values())
    outside = sum(r.verdict not in (None, "within") for r in night.rows)
    head = ["test", "phase", "cell", "accel", "kernel", "QEMU", "backend", "measured drop (MiB)", "predicted [lo, hi]",
            "verdict", "t90 measured / predicted (s)", "test outcome", "plot", f"trend ({len(trend_nights)} nights)"]
    body = []
    for r in night.rows:
        errs = [(b.get(r.key).drop_error_mib if b.get(r.key) and b.get(r.key).env == r.env else None) for b in by_night]
        pred = f"{_n(r.predicted_mib)} [{_n(r.predicted_lo_mib)}, {_n(r.predicted_hi_mib)}]" if r.predicted_mib is not None else "-"
        cells = [f"<td>{_e(r.test)}</td>", f"<td>{_e(r.phase)}</td>", f"<td>{_e(r.cell)}</td>", f"<td>{_e(r.accel)}</td>",
                 f"<td>{_e(r.kernel)}</td>", f"<td>{_e(r.qemu)}</td>", f"<td>{_e(r.backend)}</td>",
                 f'<td class="num">{_n(r.drop_mib)}</td>', f'<td class="num">{_e(pred)}</td>',
                 f'<td class="{_e(r.verdict)}">{_e(r.verdict)}</td>',
                 f'<td class="num">{_n(r.seconds_to_90pct, 2)} / {_n(r.predicted_seconds_to_90pct, 3)}</td>',
                 f'<td class="{_e(r.outcome)}">{_e(r.outcome)}</td>',
                 f"<td>{interval_svg(r)}</td>", f"<td>{trend_svg(errs)}</td>"]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>balloon-e2e nightly {_e(night.name)}"
            f"</title><style>{CSS}</style></head><body>\n<h1>balloon-e2e nightly {_e(night.name)}</h1>\n"
            f"<p>{len(tests)} tests, {failed} failed; {outside} phases outside the prediction; commit {_e(night.commit)}; "
            f"started {_e(night.started)}.</p>\n<table id=\"matrix\"><thead><tr>"
            + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>\n" + "\n".join(body)
            + "\n</tbody></table>\n</body></html>\n")
