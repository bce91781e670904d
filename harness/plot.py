"""Plot a result: per phase, QEMU RSS around the release, with the model's predicted curve (PNG)."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _panel(ax, ph: dict) -> None:
    s = ph["samples"]
    t = [x[0] for x in s]
    ax.plot(t, [x[1] for x in s], label="QEMU RSS (measured)", color="tab:blue")
    ax.plot(t, [x[2] for x in s], label="guest RAM mapping RSS", color="tab:cyan", lw=1)
    ax.axvline(0, color="grey", ls=":", label="release")
    if ph.get("predicted_curve"):
        pc = ph["predicted_curve"] + [[max(t[-1], ph["predicted_curve"][-1][0]), ph["predicted_curve"][-1][1]]]
        peak = ph["rss_peak_mib"]
        ax.step([p[0] for p in pc], [peak - p[1] for p in pc], where="post", color="tab:red",
                label="predicted (model)")
        ax.fill_between([p[0] for p in pc], [peak - p[1] - (ph["predicted_hi_mib"] - ph["predicted_mib"]) for p in pc],
                        [peak - p[1] + (ph["predicted_mib"] - ph["predicted_lo_mib"]) for p in pc],
                        step="post", color="tab:red", alpha=0.15, label="predicted interval")
    ax.set_title(f"{ph.get('phase', '')}: {ph['freed_mib']:g} MiB released, drop {ph['drop_mib']:.0f} MiB, "
                 f"predicted {ph.get('predicted_mib', float('nan')):.0f} ({ph.get('verdict', '?')})", fontsize=8)
    ax.set_xlabel("seconds since the release", fontsize=8)
    ax.set_ylabel("MiB", fontsize=8)
    ax.grid(alpha=0.3)


def plot(result: dict, path: str) -> None:
    phases = result.get("phases") or [result]
    cols = min(2, len(phases))
    rows = math.ceil(len(phases) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 3.6 * rows), dpi=100, squeeze=False)
    for ax, ph in zip(axes.flat, phases):
        _panel(ax, ph)
    for ax in list(axes.flat)[len(phases):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{result['scenario']}, reporting {'on' if result['reporting'] else 'off'}: {result['kernel']}, "
                 f"QEMU {result['qemu']}, {result['accel']}, {result['memory_mib']} MiB guest", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
