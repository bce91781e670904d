"""Plot a result: QEMU RSS over time around the free (PNG)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(result: dict, path: str) -> None:
    t = [s[0] for s in result["samples"]]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(t, [s[1] for s in result["samples"]], label="QEMU RSS", color="tab:blue")
    ax.plot(t, [s[2] for s in result["samples"]], label="guest RAM mapping RSS", color="tab:cyan", lw=1)
    ax.axvline(0, color="grey", ls=":", label="free")
    expect = result["rss_peak_mib"] - result["reportable_mib"]
    ax.axhline(expect, color="tab:orange", ls="--", label=f"peak - reportable ({result['reportable_mib']:.0f} MiB)")
    if result.get("predicted_curve"):
        pc = result["predicted_curve"]
        ax.step([p[0] for p in pc], [result["rss_peak_mib"] - p[1] for p in pc], where="post",
                color="tab:red", label="predicted (model)")
    ax.set_xlabel("seconds since the free")
    ax.set_ylabel("MiB")
    ax.set_title(f"{result['scenario']}: {result['freed_mib']} MiB freed, reporting "
                 f"{'on' if result['reporting'] else 'off'} ({result['kernel']}, QEMU {result['qemu']}, "
                 f"{result['accel']})", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
