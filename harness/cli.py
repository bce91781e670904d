"""balloon-e2e: boot a guest, run a scenario, show measured vs predicted."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from .config import GuestConfig, parse_mib
from .errors import GuestError, LaunchError, UserError
from .model.errors import ModelError
from .procfs import ProcParseError

SCENARIOS = ("touch-free",)


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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="balloon-e2e", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="boot a guest and run a scenario")
    r.add_argument("scenario", nargs="?", default="touch-free", choices=SCENARIOS)
    r.add_argument("--mib", type=_mib, default=1024, help="MiB to touch and free (default 1024)")
    r.add_argument("--memory", type=_mib, default=2048, help="guest RAM (default 2048 MiB)")
    r.add_argument("--smp", type=int, default=2)
    r.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    r.add_argument("--reporting", type=_onoff, default=True, metavar="on|off")
    r.add_argument("--reporting-order", type=int, default=None)
    r.add_argument("--guest-kernel", default="6.1", choices=("6.1", "6.12"),
                   help="Debian guest kernel: 6.1 (bookworm) or 6.12 (trixie)")
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
    pr.add_argument("--json", action="store_true")
    i = sub.add_parser("image", help="build (or find) the cached guest image")
    i.add_argument("--kernel", default="6.1")
    return p


def _human(r: dict) -> str:
    lines = [
        f"scenario {r['scenario']}: {r['freed_mib']} MiB touched and freed in a {r['memory_mib']} MiB guest",
        f"  guest {r['kernel']}, QEMU {r['qemu']}, accel {r['accel']}, reporting "
        f"{'on' if r['reporting'] else 'off'} (negotiated: {r['reporting_negotiated']}, order {r['reporting_order']})",
        f"  QEMU RSS   before {r['rss_before_mib']:8.1f}  peak {r['rss_peak_mib']:8.1f}  after {r['rss_after_mib']:8.1f} MiB",
        f"  drop       {r['drop_mib']:8.1f} MiB measured   (guest RAM mapping: {r['ram_drop_mib']:.1f} MiB)",
        f"  reportable {r['reportable_mib']:8.1f} MiB  (guest buddyinfo, blocks >= order {r['reporting_order']}, after - before the free)",
        f"  predicted  {r['predicted_mib']:8.1f} MiB  in [{r['predicted_lo_mib']:.1f}, {r['predicted_hi_mib']:.1f}]"
        f"  -> {r['verdict'].upper()}  (model: harness/model, on the guest's own snapshots)",
        f"  90% of the drop {r['seconds_to_90pct']} s after the free (predicted {r['predicted_seconds_to_90pct']} s); "
        f"idle noise {r['idle_noise_mib']} MiB; boot {r['boot_s']} s",
    ]
    for t in r["terms"]:
        lines.append(f"    term {t['name']:<22} [{t['lo_mib']:+7.1f}, {t['hi_mib']:+7.1f}] MiB  {t['explanation']}")
    return "\n".join(lines)


def cmd_run(a) -> int:
    from . import prediction
    from .guest import Guest
    from .plot import plot
    from .scenarios import touch_free

    cfg = GuestConfig(memory_mib=a.memory, smp=a.smp, accel=a.accel, reporting=a.reporting,
                      reporting_order=a.reporting_order, kernel=a.guest_kernel)
    if a.mib >= cfg.memory_mib:
        raise UserError(f"--mib {a.mib} must be below the guest's memory ({cfg.memory_mib} MiB)")
    g = Guest(cfg, progress=_progress)
    try:
        _progress(f"booting a {cfg.memory_mib} MiB guest ({g.cfg.accel}, QEMU {g.qemu.version})")
        g.launch()
        _progress(f"guest up in {g.boot_s:.1f} s")
        result = touch_free.run(g, mib=a.mib, progress=_progress)
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
        print(json.dumps({k: v for k, v in result.items() if k not in ("samples", "snapshots", "model")}))
    else:
        print(_human(result))
    _progress(f"result {stem}.json, plot {stem}.png")
    return 0 if result["verdict"] == "within" else 1


def cmd_predict(a) -> int:
    from . import prediction
    from .model import ReportingParams

    try:
        result = json.loads(Path(a.result).read_text())
        result["snapshots"]["held"]
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
