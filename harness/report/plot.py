"""Plot a result for a person: per phase, QEMU RSS around the release against the model.

Each panel shows the measured RSS (and the guest RAM mapping's), the release at
t = 0, the model's predicted RSS as a step curve with its interval as a band,
each predicted reporting pass as a dotted line with what it reports, the verdict
in the title (green within, red outside), and a box with the measured and
predicted figures and the per-block counts (harness/measure/perblock.py) once RSS settled.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VERDICT_COLOUR = {"within": "tab:green", "outside": "tab:red"}


def block_lines(per_block: dict | None) -> list[str]:
    """Pure: the per-block summary -> a few lines: reported / not, per zone and order, once settled."""
    if not per_block:
        return []
    out = []
    settled = per_block.get("settled", {})
    for zone, orders in sorted(settled.get("blocks", {}).items()):
        cells = [f"o{o}: {c['reported']} rep / {c['unreported']} not" for o, c in sorted(orders.items(), key=lambda x: int(x[0]))]
        out.append(f"{zone:<6} " + ", ".join(cells))
    t = per_block.get("transition")
    if t:
        out.append(f"held after release {t['held_after_free']} pages: {t['released']} given back, "
                   f"{t['still_held']} still held")
    v = per_block.get("violations", {}).get("count")
    if v is not None:
        out.append(f"invariant violations: {v}")
    return out


def figures_lines(ph: dict) -> list[str]:
    """Pure: the phase's headline figures, measured against predicted."""
    m = "ram_" if ph.get("metric") == "mapping" else ""
    lines = [f"released {ph['freed_mib']:g} MiB; reportable {ph.get('reportable_mib', float('nan')):.0f} MiB",
             f"measured drop {ph[m + 'drop_mib']:.1f} MiB, 90% after {ph.get('seconds_to_90pct')} s"]
    if "predicted_mib" in ph:
        lines.append(f"predicted {ph['predicted_mib']:.1f} [{ph['predicted_lo_mib']:.1f}, {ph['predicted_hi_mib']:.1f}],"
                     f" 90% after {ph.get('predicted_seconds_to_90pct')} s")
    fm = ph.get("free_memory")
    if fm:
        lines.append(f"guest free (balloon stats) {fm['measured_mib']:.1f} MiB at {fm['at_s']:.1f} s, "
                     f"predicted {fm['expected_mib']:.1f} [{fm['lo_mib']:.1f}, {fm['hi_mib']:.1f}]")
    return lines


def _stats_axis(ax, ph: dict) -> None:
    """The guest's free memory from its balloon statistics, on a second axis, with the model's
    free memory once reporting is over as a band at the statistic's time."""
    rows = [r for r in (ph.get("guest_stats") or []) if r[2] is not None]
    if not rows:
        return
    ax2 = ax.twinx()
    ax2.plot([r[0] for r in rows], [r[2] for r in rows], ".", color="tab:green", ms=3,
             label="guest free memory (balloon stats)")
    fm = ph.get("free_memory")
    if fm:
        ax2.errorbar([fm["at_s"]], [fm["expected_mib"]], yerr=[[fm["expected_mib"] - fm["lo_mib"]],
                     [fm["hi_mib"] - fm["expected_mib"]]], fmt="_", color="darkgreen", capsize=3,
                     label="predicted guest free memory")
    ax2.set_ylabel("guest free MiB (balloon stats)", fontsize=7, color="tab:green")
    ax2.tick_params(labelsize=6, colors="tab:green")
    ax2.legend(fontsize=6, loc="center right")


def _panel(ax, ph: dict) -> None:
    s = ph["samples"]
    t = [x[0] for x in s]
    mapping = ph.get("metric") == "mapping"
    col, peak = (2, ph["ram_rss_peak_mib"]) if mapping else (1, ph["rss_peak_mib"])
    ax.plot(t, [x[1] for x in s], label="QEMU RSS (measured)", color="tab:blue", lw=1.6)
    ax.plot(t, [x[2] for x in s], label="guest RAM mapping RSS", color="tab:cyan", lw=0.8)
    ax.axvline(0, color="black", lw=1.2)
    ax.annotate("release", (0, 1), xycoords=("data", "axes fraction"), xytext=(3, -10),
                textcoords="offset points", fontsize=7)
    end = t[-1] if t else 1.0
    if ph.get("predicted_curve"):
        pc = ph["predicted_curve"] + [[max(end, ph["predicted_curve"][-1][0]), ph["predicted_curve"][-1][1]]]
        xs = [p[0] for p in pc]
        lo_w = ph["predicted_mib"] - ph["predicted_lo_mib"]
        hi_w = ph["predicted_hi_mib"] - ph["predicted_mib"]
        ax.step(xs, [peak - p[1] for p in pc], where="post", color="tab:red", lw=1.2,
                label="predicted (model)" + (" - guest RAM mapping" if mapping else ""))
        ax.fill_between(xs, [peak - p[1] - hi_w for p in pc], [peak - p[1] + lo_w for p in pc],
                        step="post", color="tab:red", alpha=0.15, label="predicted interval")
        for i, p in enumerate((ph.get("model") or {}).get("passes", [])):
            ax.axvline(p["t_start"], color="grey", ls=":", lw=0.8, label="predicted pass" if i == 0 else None)
            ax.annotate(f"{p['reported_mib']:.0f} MiB", (p["t_start"], 0), xycoords=("data", "axes fraction"),
                        xytext=(2, 3), textcoords="offset points", fontsize=6, color="grey")
    _stats_axis(ax, ph)
    verdict = ph.get("verdict", "?")
    ax.set_title(f"{ph.get('phase', '')}: {verdict.upper()}", fontsize=9, loc="left",
                 color=VERDICT_COLOUR.get(verdict, "black"), fontweight="bold")
    text = "\n".join(figures_lines(ph) + block_lines(ph.get("per_block")))
    ax.text(0.99, 0.97, text, transform=ax.transAxes, fontsize=6.5, va="top", ha="right", multialignment="left", family="monospace",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "lightgrey"})
    ax.set_xlabel("seconds since the release", fontsize=8)
    ax.set_ylabel("MiB resident on the host", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def plot(result: dict, path: str) -> None:
    phases = result.get("phases") or [result]
    cols = min(2, len(phases))
    rows = math.ceil(len(phases) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(8 * cols, 4.6 * rows), dpi=110, squeeze=False)
    for ax, ph in zip(axes.flat, phases):
        _panel(ax, ph)
    for ax in list(axes.flat)[len(phases):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    verdict = result.get("verdict", "?")
    caveat = f"\n{result['model_caveat']}" if result.get("model_caveat") else ""
    fig.suptitle(f"{result['scenario']}, reporting {'on' if result['reporting'] else 'off'}: verdict "
                 f"{verdict.upper()} - guest {result['kernel']}, QEMU {result['qemu']}, {result['accel']}, "
                 f"{result['memory_mib']} MiB guest{caveat}", fontsize=9,
                 color=VERDICT_COLOUR.get(verdict, "black"))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
