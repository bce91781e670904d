"""balloon-e2e: boot a guest, run a scenario, show measured vs predicted."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from .config import BACKENDS, NUMA_NODES, GuestConfig, parse_mib
from .errors import GuestError, LaunchError, UserError
from .model.errors import ModelError
from .procfs import ProcParseError

SCENARIOS = ("touch-free", "fragment", "reuse", "integrity", "page-cache", "hint-migrate")


def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _onoff(v: str) -> bool:
    if v not in ("on", "off"):
        raise argparse.ArgumentTypeError("expected on or off")
    return v == "on"


def _mib(v: str) -> int:
    try:
        return parse_mib(v)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump: `balloon-e2e run -h` has the usage
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="balloon-e2e", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="boot a guest and run a scenario")
    r.add_argument("scenario", nargs="?", default="touch-free", choices=SCENARIOS)
    r.add_argument("--mib", type=_mib, default=1024, help="MiB to touch and free (default 1024)")
    r.add_argument("--memory", type=_mib, default=2048, help="guest RAM (default 2048 MiB)")
    r.add_argument("--smp", type=int, default=2)
    r.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    r.add_argument("--reporting", type=_onoff, default=True, metavar="on|off")
    r.add_argument("--reporting-order", type=int, default=None)
    r.add_argument("--hinting", type=_onoff, default=None, metavar="on|off",
                   help="virtio-balloon free-page-hint with its iothread (hint-migrate; default on there)")
    r.add_argument("--guest-kernel", default="6.1", choices=("6.1", "6.12"),
                   help="Debian guest kernel: 6.1 (bookworm) or 6.12 (trixie)")
    r.add_argument("--qemu", default=None, metavar="7.2|10.0|PATH",
                   help="QEMU: 7.2 (bookworm's, installed), 10.0 (bookworm-backports', extracted into the cache "
                        "once, never installed) or a binary's path (default: $BALLOON_E2E_QEMU, else PATH)")
    r.add_argument("--backend", default="anon", choices=BACKENDS,
                   help="guest RAM: anon (private anonymous), memfd (shared), file (shared, on tmpfs /dev/shm), "
                        "hugetlbfs (shared, huge pages reserved for the run and given back)")
    r.add_argument("--hugepage-size", type=_mib, default=2, metavar="2M|1G",
                   help="huge page size of --backend hugetlbfs (default 2M)")
    r.add_argument("--numa-nodes", type=int, default=1, choices=NUMA_NODES,
                   help="guest NUMA nodes, RAM and vCPUs split evenly (default 1)")
    r.add_argument("--host-thp", type=_onoff, default=None, metavar="on|off",
                   help="host THP for anonymous guest RAM: on (needs the host's madvise or always mode), off "
                        "(disabled for QEMU alone, prctl PR_SET_THP_DISABLE); default: as the host has it")
    r.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    r.add_argument("--out", default="results", help="directory for the result JSON and plot (default results/)")
    r.add_argument("--keep-logs", action="store_true", help="keep the console and QEMU logs")
    pr = sub.add_parser("predict", help="run the model alone on a saved result, with what-if kernel constants")
    pr.add_argument("result", help="a results/*.json file written by `run`")
    pr.add_argument("--delay", type=float, default=2.0, help="PAGE_REPORTING_DELAY in seconds (kernel: 2)")
    pr.add_argument("--capacity", type=int, default=32, help="PAGE_REPORTING_CAPACITY (kernel: 32)")
    pr.add_argument("--budget-divisor", type=int, default=16, help="budget = nr_free / (capacity * this) (kernel: 16)")
    pr.add_argument("--order", type=int, default=None, help="reporting order (default: the guest's)")
    pr.add_argument("--no-zone-gate", action="store_true", help="drop the low-watermark zone gate")
    pr.add_argument("--bitmap", action="store_true",
                    help="also run seed 001's unmerged per-zone bitmap design on the same release (harness/model/bitmap.py)")
    pr.add_argument("--json", action="store_true")
    i = sub.add_parser("image", help="build (or find) the cached guest image")
    i.add_argument("--kernel", default="6.1")
    return p


EXTRAS = ("guest_thp", "retouch_rise_mib", "keep_mib", "cycles", "verified_pages", "mismatched_pages",
          "zero_checked_pages", "nonzero_pages")


def _human(r: dict) -> str:
    lines = [
        f"scenario {r['scenario']}: {r['freed_mib']} MiB in a {r['memory_mib']} MiB guest, {r['smp']} vCPU",
        f"  guest {r['kernel']}, QEMU {r['qemu']}, accel {r['accel']}, reporting "
        f"{'on' if r['reporting'] else 'off'} (negotiated: {r['reporting_negotiated']}, order {r['reporting_order']}); "
        f"boot {r['boot_s']} s; idle noise {r.get('idle_noise_mib')} MiB",
    ]
    if "rss_before_mib" in r:
        lines.append(f"  QEMU RSS before the workload {r['rss_before_mib']:.1f} MiB")
    lines.append(f"  {'phase':<11} {'freed':>7} {'peak':>8} {'after':>8} {'drop':>8} {'reportable':>10} "
                 f"{'predicted [lo, hi]':>26} {'verdict':>8} {'t90 meas/pred (s)':>18}")
    for ph in r["phases"]:
        m = "ram_" if ph.get("metric") == "mapping" else ""  # the figures the verdict is on
        lines.append(
            f"  {ph['phase']:<11} {ph['freed_mib']:>7g} {ph[m + 'rss_peak_mib']:>8.1f} {ph[m + 'rss_after_mib']:>8.1f} "
            f"{ph[m + 'drop_mib']:>8.1f} {ph['reportable_mib']:>10.1f} "
            f"{ph['predicted_mib']:>8.1f} [{ph['predicted_lo_mib']:>7.1f}, {ph['predicted_hi_mib']:>7.1f}] "
            f"{ph['verdict']:>8} {str(ph['seconds_to_90pct']):>8} / {str(ph['predicted_seconds_to_90pct']):<8}")
    lines.append("  (MiB; QEMU process RSS; drop = peak - after; reportable = guest buddyinfo blocks >= order "
                 f"{r['reportable_order']}, after - before the release; predicted by harness/model from the guest's snapshots)")
    if r.get("metric") == "mapping":
        lines.append(f"  figures of the guest RAM mapping: hugetlb pages are outside the process RSS "
                     f"(its drop: {r['drop_mib']} MiB)")
    extras = [f"{k}={r[k]}" for k in EXTRAS if k in r]
    if extras:
        lines.append("  " + "  ".join(extras))
    lines.append(f"  verdict: {r['verdict'].upper()}; terms of the last phase's interval:")
    for t in r["terms"]:
        lines.append(f"    {t['name']:<22} [{t['lo_mib']:+7.1f}, {t['hi_mib']:+7.1f}] MiB  {t['explanation']}")
    return "\n".join(lines)


def cmd_run(a) -> int:
    if a.scenario == "hint-migrate":  # its own flow: two QEMUs, a migration (harness/hint_cli.py)
        from .hint_cli import cmd_hint_migrate
        return cmd_hint_migrate(a)
    from . import prediction
    from .guest import Guest
    from .plot import plot
    from .scenarios import fragment, integrity, page_cache, reuse, touch_free

    cfg = GuestConfig(memory_mib=a.memory, smp=a.smp, accel=a.accel, reporting=a.reporting,
                      reporting_order=a.reporting_order, kernel=a.guest_kernel, qemu=a.qemu, backend=a.backend,
                      hugepage_mib=a.hugepage_size, numa_nodes=a.numa_nodes, host_thp=a.host_thp,
                      disk_mib=a.mib + 64 if a.scenario == "page-cache" else 0)
    if a.mib >= cfg.memory_mib:
        raise UserError(f"--mib {a.mib} must be below the guest's memory ({cfg.memory_mib} MiB)")
    g = Guest(cfg, progress=_progress)
    try:
        _progress(f"booting a {cfg.memory_mib} MiB guest ({g.cfg.accel}, QEMU {g.qemu.version})")
        g.launch()
        _progress(f"guest up in {g.boot_s:.1f} s")
        scenario = {"touch-free": touch_free, "fragment": fragment, "reuse": reuse, "integrity": integrity,
                    "page-cache": page_cache}[a.scenario]
        kw = {} if a.scenario == "integrity" else {"mib": a.mib}
        result = scenario.run(g, progress=_progress, **kw)
    finally:
        how = g.shutdown(keep_logs=a.keep_logs)
        if a.keep_logs:
            _progress(f"logs kept in {g.rundir}")
        _progress(f"QEMU {how}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{time.strftime('%Y%m%d-%H%M%S')}-{result['scenario']}-{'on' if a.reporting else 'off'}"
    save = lambda: stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")  # noqa: E731
    save()  # the measurement is kept even if the model fails on it
    _progress("running the model on the guest's own snapshots")
    try:
        result.update(prediction.predict(result))
    except (ProcParseError, ModelError) as e:
        raise GuestError(f"the model could not use this run's snapshots ({e}); measurement kept in {stem}.json") from None
    save()
    plot(result, str(stem.with_suffix(".png")))
    if a.json:
        drop = ("samples", "snapshots", "model", "captures")
        slim = {k: v for k, v in result.items() if k not in drop}
        slim["phases"] = [{k: v for k, v in ph.items() if k not in drop} for ph in result["phases"]]
        print(json.dumps(slim))
    else:
        print(_human(result))
    _progress(f"result {stem}.json, plot {stem}.png")
    return 0 if result["verdict"] == "within" else 1


def cmd_predict(a) -> int:
    from . import prediction
    from .model import ReportingParams

    try:
        result = json.loads(Path(a.result).read_text())
        result["phases"][-1]["snapshots"]["held"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{a.result}: not a result file with snapshots ({e.__class__.__name__}: {e})") from None
    try:
        params = ReportingParams(capacity=a.capacity, delay_s=a.delay, budget_divisor=a.budget_divisor,
                                 order=a.order, zone_gate=not a.no_zone_gate)
    except ValueError as e:
        raise UserError(str(e)) from None
    p = prediction.predict(result, params)
    if a.json:
        print(json.dumps(p))
        return 0
    print(f"model on {a.result}: {result['freed_mib']} MiB freed, {result['kernel']}, "
          f"delay {a.delay} s, capacity {a.capacity}, budget divisor {a.budget_divisor}")
    print(f"  predicted drop {p['predicted_mib']:.1f} MiB in [{p['predicted_lo_mib']:.1f}, {p['predicted_hi_mib']:.1f}]"
          f"; 90% after {p['predicted_seconds_to_90pct']} s (measured with the kernel's constants: "
          f"{result['drop_mib']} MiB, 90% after {result['seconds_to_90pct']} s)")
    print("  curve (s after the free: MiB back): " + ", ".join(f"{t:g}: {m:.0f}" for t, m in p["predicted_curve"]))
    for t in p["terms"]:
        print(f"  term {t['name']}: [{t['lo_mib']:+.1f}, {t['hi_mib']:+.1f}] MiB  {t['explanation']}")
    if a.bitmap:
        from .whatif import bitmap_whatif
        try:
            w = bitmap_whatif(result, p)
        except ValueError as e:
            raise UserError(str(e)) from None
        print("  bitmap design (seed 001), curve: " + ", ".join(f"{t:g}: {m:.0f}" for t, m in w["bitmap"]["curve"]))
        for line in w["differences"]:
            print(f"    {line}")
    return 0


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so every `finally` shuts its guest down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    a = parser().parse_args(argv)
    try:
        if a.cmd == "run":
            return cmd_run(a)
        if a.cmd == "predict":
            return cmd_predict(a)
        if a.cmd == "image":
            from . import image
            print(image.get(a.kernel, progress=_progress).dir)
            return 0
    except UserError as e:
        print(f"balloon-e2e: error: {e}", file=sys.stderr)
        return 2
    except (LaunchError, GuestError, TimeoutError) as e:
        print(f"balloon-e2e: failed: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("balloon-e2e: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
