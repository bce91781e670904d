"""balloon-e2e: boot a guest, run a scenario, show measured vs predicted."""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from harness.measure.phase import main_phase
from harness.report import runfolder
from harness.config import BACKENDS, NUMA_NODES, GuestConfig, parse_mib
from harness.errors import (EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OUTSIDE, EXIT_WITHIN, Interrupted,
                     UserError, classify)
from harness.scenarios import SCENARIOS as REGISTRY
from harness.scenarios import names

SCENARIOS = names()
# Kernel series whose rules harness/model/ was written from and checked against (MEASURED.md).
MODELLED_KERNELS = ((6, 1), (6, 12))
log = logging.getLogger("harness.cli")


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
        sys.exit(EXIT_BAD_INPUT)


def _guest_options(r: argparse.ArgumentParser) -> None:
    """The options that say what guest to boot: the same for `run` and `shell`."""
    r.add_argument("--memory", type=_mib, default=2048, help="guest RAM (default 2048 MiB)")
    r.add_argument("--start", default="restore", choices=("restore", "boot"),
                   help="restore a saved guest of this configuration, built once and cached (default; "
                        "a backend other than anon, or hinting, boots), or boot it")
    r.add_argument("--smp", type=int, default=2)
    r.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    r.add_argument("--reporting", type=_onoff, default=True, metavar="on|off")
    r.add_argument("--reporting-order", type=int, default=None)
    r.add_argument("--guest-kernel", default="6.1", metavar="VERSION",
                   help="Debian guest kernel: 6.1 (bookworm), 6.12 (trixie), or any linux-image version apt "
                        "finds in bookworm, trixie or bookworm-backports (e.g. 6.1.0-47-cloud-amd64)")
    r.add_argument("--kernel", default=None, metavar="PATH",
                   help="your own kernel: a linux-image .deb, or a bzImage (with --modules)")
    r.add_argument("--modules", default=None, metavar="DIR",
                   help="the bzImage's modules: lib/modules/<release>, or the INSTALL_MOD_PATH holding it")
    r.add_argument("--kernel-arg", action="append", default=[], metavar="ARG",
                   help="one more guest kernel command-line argument (repeatable)")
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
    r.add_argument("--hinting", type=_onoff, default=None, metavar="on|off",
                   help="virtio-balloon free-page-hint with its iothread (hint-migrate; default on there)")
    r.add_argument("--deflate-on-oom", type=_onoff, default=False, metavar="on|off",
                   help="virtio-balloon deflate-on-oom (default off; the deflate-on-oom scenario runs it as given)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="balloon-e2e", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="boot a guest and run a scenario")
    r.add_argument("scenario", nargs="?", default=None, choices=SCENARIOS,
                   help="default touch-free, or workload with --workload")
    r.add_argument("--mib", type=_mib, default=1024, help="MiB to touch and free (default 1024)")
    _guest_options(r)
    r.add_argument("--workload", default=None, metavar="CMD",
                   help="your command, run in the guest by its /bin/sh; the release is its exit (each process "
                        "that frees >= 16 MiB at its exit is a phase) unless --release says otherwise")
    r.add_argument("--copy", action="append", default=[], metavar="FILE",
                   help="copy FILE into the guest's /usr/local/bin (first on the workload's PATH; repeatable)")
    r.add_argument("--release", default=None, metavar="CMD",
                   help="the release: a command run once the workload's memory has settled")
    r.add_argument("--timeout", type=float, default=900.0, help="seconds the workload may take (default 900)")
    r.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout, nothing else")
    r.add_argument("--out", default="results", help="where the run's folder goes (default results/)")
    r.add_argument("--no-live", action="store_true", help="no live panel on a terminal, log lines only")
    s = sub.add_parser("shell", help="boot a guest with the run options and open an SSH shell in it")
    _guest_options(s)
    sub.add_parser("list", help="the scenarios, one line each on what it proves")
    pr = sub.add_parser("predict", help="run the model alone on a saved result, with what-if kernel constants")
    pr.add_argument("result", help="a result.json written by `run` (or its run folder)")
    pr.add_argument("--delay", type=float, default=2.0, help="PAGE_REPORTING_DELAY in seconds (kernel: 2)")
    pr.add_argument("--capacity", type=int, default=32, help="PAGE_REPORTING_CAPACITY (kernel: 32)")
    pr.add_argument("--budget-divisor", type=int, default=16, help="budget = nr_free / (capacity * this) (kernel: 16)")
    pr.add_argument("--budget-offset", type=int, default=0, help="budget off by this many reports (kernel: 0)")
    pr.add_argument("--order", type=int, default=None, help="reporting order (default: the guest's)")
    pr.add_argument("--no-zone-gate", action="store_true", help="drop the low-watermark zone gate")
    pr.add_argument("--bitmap", action="store_true",
                    help="also run seed 001's unmerged per-zone bitmap design on the same release (harness/model/bitmap.py)")
    pr.add_argument("--json", action="store_true")
    i = sub.add_parser("image", help="the cached guest image: build (default), path, clean")
    i.add_argument("action", nargs="?", default="build", choices=("build", "path", "clean"))
    i.add_argument("--kernel", default=None, metavar="VERSION|PATH",
                   help="as run's --guest-kernel, or a .deb / bzImage path (default 6.1)")
    i.add_argument("--modules", default=None, metavar="DIR")
    from harness.report import history  # history ingest|show|page, compare: harness/report/history.py
    history.add_parsers(sub)
    return p


def _kernel(a) -> str:
    if a.kernel and a.guest_kernel != "6.1":
        raise UserError("--kernel and --guest-kernel name two kernels: give one")
    return a.kernel or a.guest_kernel


def guest_config(a, disk_mib: int = 0) -> GuestConfig:
    """The GuestConfig the guest options describe (a UserError if they do not fit)."""
    return GuestConfig(memory_mib=a.memory, smp=a.smp, accel=a.accel, reporting=a.reporting,
                       reporting_order=a.reporting_order, kernel=_kernel(a), modules=a.modules,
                       kernel_args=tuple(a.kernel_arg), qemu=a.qemu, backend=a.backend,
                       hugepage_mib=a.hugepage_size, numa_nodes=a.numa_nodes, host_thp=a.host_thp,
                       disk_mib=disk_mib, deflate_on_oom=a.deflate_on_oom)


def scenario_of(a) -> str:
    """The scenario the run options ask for; a UserError if they contradict each other."""
    scenario = a.scenario or ("workload" if a.workload else "touch-free")
    if scenario == "workload" and not a.workload:
        raise UserError("scenario workload needs --workload CMD")
    if a.workload and scenario != "workload":
        raise UserError(f"--workload runs your command as the scenario; drop {scenario!r} or --workload")
    if (a.release or a.copy) and not a.workload:
        raise UserError("--release and --copy go with --workload")
    for f in a.copy:
        if not Path(f).is_file():
            raise UserError(f"--copy {f}: no such file")
    if a.timeout <= 0:
        raise UserError("--timeout must be positive")
    return scenario


# What each scenario's run() gets from the options.
def _run_scenario(name: str, g, a) -> dict:
    from harness.scenarios import deflate_on_oom, fragment, inflate, integrity, page_cache, reuse, stats, touch_free, workload
    dispatch = {
        "inflate": lambda: inflate.run(g, mib=a.mib),
        "deflate-on-oom": lambda: deflate_on_oom.run(g, mib=a.mib),
        "stats": lambda: stats.run(g),
        "touch-free": lambda: touch_free.run(g, mib=a.mib),
        "fragment": lambda: fragment.run(g, mib=a.mib),
        "reuse": lambda: reuse.run(g, mib=a.mib),
        "integrity": lambda: integrity.run(g),
        "page-cache": lambda: page_cache.run(g, mib=a.mib),
        "workload": lambda: workload.run(g, a.workload, release=a.release, copies=a.copy, timeout=a.timeout),
    }
    return dispatch[name]()


EXTRAS = ("guest_thp", "retouch_rise_mib", "keep_mib", "cycles", "verified_pages", "mismatched_pages",
          "zero_checked_pages", "nonzero_pages", "workload", "release")


def _human(r: dict) -> str:
    lines = [
        f"scenario {r['scenario']}: {r['freed_mib']} MiB in a {r['memory_mib']} MiB guest, {r['smp']} vCPU",
        f"  guest {r['kernel']}, QEMU {r['qemu']}, accel {r['accel']}, reporting "
        f"{'on' if r['reporting'] else 'off'} (negotiated: {r['reporting_negotiated']}, order {r['reporting_order']}); "
        f"{r.get('start_mode', 'boot')} {r['boot_s']} s; idle noise {r.get('idle_noise_mib')} MiB",
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
    main = main_phase(r)
    lines.append("  (MiB; QEMU process RSS; drop = peak - after; reportable = guest buddyinfo blocks >= order "
                 f"{main['reportable_order']}, after - before the release; predicted by harness/model from the "
                 "guest's snapshots)")
    if main.get("metric") == "mapping":
        lines.append(f"  figures of the guest RAM mapping: hugetlb pages are outside the process RSS "
                     f"(its drop: {main['drop_mib']} MiB)")
    extras = [f"{k}={r[k]}" for k in EXTRAS if k in r and r[k] is not None]
    if extras:
        lines.append("  " + "  ".join(extras))
    caveat = f" ({r['model_caveat']})" if r.get("model_caveat") else ""
    for ph in r["phases"]:
        lay, rep = ph.get("layout"), ph.get("layout_reported")
        if lay:
            lines.append(f"  {ph['phase']}: free blocks >= order right after the release: real {lay['real']}, "
                         f"predicted {lay['predicted']}, same pfn and order {lay['matched']}"
                         + (f" (+{lay['unplaced_predicted']} THP from before it drained, position unknown)"
                            if lay.get("unplaced_predicted") else "")
                         + ("" if "decay_ticks" not in lay else
                            " (the model's after decay: the capture's highs are none of its ticks')"
                            if lay["decay_ticks"] is None else " (before any of vmstat's decay ticks)"
                            if lay["decay_ticks"] == 0 else f" (the model's after {lay['decay_ticks']} decay tick(s))")
                         + ("; blocks one side only, by term: "
                            + ", ".join(f"{k} {v}" for k, v in lay["differences"].items())
                            if lay.get("differences") else "")
                         + (f" (not explained by pcp_residue's runs: {lay['unexplained'][:3]})"
                            if lay.get("unexplained") else "")
                         + (f" (beyond their terms: {'; '.join(lay['beyond'])})" if lay.get("beyond") else "")
                         + (f"; reported once done: real {rep['real']}, predicted {rep['predicted']}, "
                            f"matched {rep['matched']}" if rep else ""))
        if (ph.get("judgement") or {}).get("free_memory"):
            lines.append(f"  {ph['phase']}: {ph['judgement']['free_memory']} (balloon stats, once reporting was over)")
        for f in (ph.get("judgement") or {}).get("failures", [])[:3]:
            lines.append(f"  {ph['phase']}: {f}")
    t = r.get("timings") or {}
    if t:
        f = lambda k: "-" if t.get(k) is None else f"{t[k]:g}"  # noqa: E731
        lines.append(f"  seconds: {t.get('start', 'boot')} {f('start_s')}, workload {f('workload_s')}, reports "
                     f"{f('first_report_s')}-{f('last_report_s')} after the release, phase end {f('end_s')}, "
                     f"model {f('model_s')}; QEMU start to verdict {f('verdict_s')} (floor {f('floor_s')})")
    lines.append(f"  verdict: {r['verdict'].upper()}{caveat}; terms of the last phase's interval:")
    for t in main["terms"]:
        lines.append(f"    {t['name']:<22} [{t['lo_mib']:+7.1f}, {t['hi_mib']:+7.1f}] MiB  {t['explanation']}")
    return "\n".join(lines)


def model_caveat(kernel_release: str) -> str | None:
    """Pure: what the verdict must say when the model has no checked rules for this kernel."""
    from harness.model.kernel import kernel_version
    v = kernel_version(kernel_release)
    if v in MODELLED_KERNELS:
        return None
    known = " and ".join(f"{a}.{b}" for a, b in MODELLED_KERNELS)
    return (f"the model's rules were read from and checked on Linux {known}; {v[0]}.{v[1]} is predicted "
            f"with the rules of {'6.12' if v >= (6, 2) else '6.1'}, unchecked")


def _slim(result: dict) -> dict:
    drop = ("samples", "snapshots", "model", "captures", "freed_pfns", "pre", "balloon_phases")
    slim = {k: v for k, v in result.items() if k not in drop}
    slim["phases"] = [{k: v for k, v in ph.items() if k not in drop} for ph in result.get("phases", [])]
    return slim


def _scenario_module(name: str):
    import importlib
    return importlib.import_module(f".scenarios.{name.replace('-', '_')}", __package__)


def _logging(folder: Path | None, live_title: str | None):
    """Log records of the harness to stderr (a live panel on a terminal) and, at DEBUG, to the
    run folder's cli.log. Returns the live display (a context manager) or None."""
    from harness.report import live
    root = logging.getLogger("harness")
    root.setLevel(logging.DEBUG)
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.propagate = False
    display = None
    if live_title is not None:
        display = live.LiveDisplay(live_title)
        root.addHandler(display)
    else:
        root.addHandler(live.plain_handler())
    if folder is not None:
        fh = logging.FileHandler(folder / "cli.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        fh.setLevel(logging.DEBUG)
        root.addHandler(fh)
    return display


def cmd_run(a) -> int:
    from harness.verdict import prediction
    from harness.vm.guest import Guest
    from harness.report.plot import plot

    scenario = scenario_of(a)
    if scenario == "hint-migrate":  # its own flow: two QEMUs, a migration (harness/hint_cli.py)
        from harness.hint_cli import cmd_hint_migrate
        return cmd_hint_migrate(a)
    if scenario != "workload" and a.mib >= a.memory:
        raise UserError(f"--mib {a.mib} must be below the guest's memory ({a.memory} MiB)")
    cfg = guest_config(a, disk_mib=a.mib + 64 if scenario == "page-cache" else 0)
    started = time.time()
    folder = runfolder.create(Path(a.out), scenario, started)
    (folder / "command.txt").write_text(shlex.join(["balloon-e2e", *sys.argv[1:]]) + "\n")
    runfolder.write_json(folder, "result.json", {"complete": False, "status": "running", "folder": str(folder)})
    live_on = sys.stderr.isatty() and not a.no_live
    display = _logging(folder, f"balloon-e2e {scenario}" if live_on else None)
    g = None
    measured = None
    try:
        with display if display is not None else _Null():
            try:
                from harness.scenarios import stats
                g = (stats.EarlyStatsGuest if scenario == "stats" else Guest).provisioned(cfg, rundir=folder, start=a.start)
                log.info("%s a %d MiB guest (%s, QEMU %s, kernel %s)%s",
                         "restoring" if g.start_mode == "restore" else "booting", cfg.memory_mib, g.cfg.accel,
                         g.qemu.version, g.image.kernel_release, f" (boots: {g.start_note})" if g.start_note else "",
                         extra={"phase": g.start_mode})
                g.launch()
                log.info("guest up in %.1f s", g.boot_s, extra={"qemu_pid": g.pid})
                result = measured = _run_scenario(scenario, g, a)
            finally:
                if g is not None:
                    how = g.shutdown()
                    log.info("QEMU %s", how)
            runfolder.write_json(folder, "result.json", {**result, "complete": False, "status": "predicting"})
            log.info("running the model on the guest's own snapshots", extra={"phase": "model"})
            mod = _scenario_module(scenario)
            if result.get("phases"):
                prediction.predict(result)
            if hasattr(mod, "judge"):  # the balloon scenarios' own verdicts (harness/scenarios/inflate.py)
                mod.judge(result)
            caveat = model_caveat(result["kernel"])
            if caveat:
                result["model_caveat"] = caveat
            runfolder.write_json(folder, "prediction.json", {
                "verdict": result["verdict"], "model_caveat": caveat,
                "phases": [{k: v for k, v in ph.items() if k.startswith("predicted_") or
                            k in ("phase", "terms", "model", "metric", "verdict", "drop_mib", "ram_drop_mib")}
                           for ph in result.get("phases", [])]})
            if result.get("phases"):
                plot(result, str(folder / "plot.png"))
            result.update(complete=True, status="complete", folder=str(folder))
            runfolder.write_json(folder, "result.json", result)
    except BaseException as e:  # noqa: BLE001 - every way out keeps the folder and says why
        if isinstance(e, SystemExit):
            raise
        code, msg = classify(e)
        status = {EXIT_INTERRUPTED: "interrupted", EXIT_BAD_INPUT: "bad input"}.get(code, "failed")
        log.debug("run ended: %s", msg, exc_info=not isinstance(e, KeyboardInterrupt))
        if code == EXIT_BAD_INPUT and (g is None or g.proc is None):
            # found before any QEMU ran: the folder would hold nothing but the command
            shutil.rmtree(folder, ignore_errors=True)
            if a.json:
                print(json.dumps({"complete": False, "status": status, "error": msg, "exit_code": code}))
            print(f"balloon-e2e: {msg}", file=sys.stderr)
            return code
        record = runfolder.incomplete(status, msg, code, folder, started)
        if measured is not None:  # the guest was measured, the model or the plot failed: keep the figures
            record = {**_slim(measured), **record}
        runfolder.write_json(folder, "result.json", record)
        if a.json:
            print(json.dumps(record))
        # one line for bad input; a failure's message may carry its evidence (argv, logs) below
        print(f"balloon-e2e: {msg} [run folder {folder} kept, marked incomplete: {status}]", file=sys.stderr)
        return code
    if a.json:
        print(json.dumps(_slim(result)))
    else:
        mod = _scenario_module(scenario)
        print(mod.human(result) if hasattr(mod, "human") else _human(result))
    print(f"balloon-e2e: run folder {folder} (result.json, plot.png)", file=sys.stderr)
    return EXIT_WITHIN if result["verdict"] == "within" else EXIT_OUTSIDE


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def cmd_shell(a) -> int:
    """A guest with the run options, an SSH shell in it; QEMU is reaped however the shell ends.
    On a terminal: an interactive shell (OpenSSH's ssh). Otherwise stdin is the script to run."""
    from harness.vm import keys
    from harness.vm.guest import Guest
    from harness.paths import cache_dir

    cfg = guest_config(a)
    interactive = sys.stdin.isatty()
    ssh = shutil.which("ssh")
    if interactive and not ssh:
        raise UserError("an interactive shell needs OpenSSH's ssh client (apt-get install openssh-client); "
                        "or pipe the commands in: echo 'uname -a' | balloon-e2e shell")
    _logging(None, None)
    g = Guest.provisioned(cfg, start=a.start)
    try:
        log.info("starting a %d MiB guest (%s, kernel %s)", cfg.memory_mib, g.cfg.accel, g.image.kernel_release)
        g.launch()
        log.info("guest up in %.1f s; QEMU pid %d, console log %s", g.boot_s, g.pid, g.console_log)
        if interactive:
            keys.key_pair()
            status = subprocess.call([ssh, "-i", str(cache_dir() / "ssh" / "id_ed25519"), "-p", str(g.ssh_port),
                                      "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                                      "-o", "LogLevel=ERROR", "root@127.0.0.1"])
        else:
            r = g.run(sys.stdin.read(), check=False, timeout=3600)
            sys.stdout.write(r.stdout)
            sys.stderr.write(r.stderr)
            status = r.status
        if status:
            log.info("the guest shell exited %d", status)
    finally:
        log.info("QEMU %s", g.shutdown())
    return EXIT_WITHIN


def cmd_list(a) -> int:
    width = max(len(s.name) for s in REGISTRY)
    for s in REGISTRY:
        print(f"{s.name:<{width}}  {s.proves}")
    return EXIT_WITHIN


def cmd_image(a) -> int:
    from harness.build import image
    kernel = a.kernel or "6.1"
    if a.modules and not (image.is_local(kernel) and not kernel.endswith(".deb")):
        raise UserError("--modules goes with --kernel PATH of a bzImage")
    if a.action == "build":
        _logging(None, None)
        print(image.get(kernel, modules=a.modules).dir)
    elif a.action == "path":
        d = image.cached(kernel, modules=a.modules)
        if d is None:
            raise UserError(f"no cached image for kernel {kernel} (build it: balloon-e2e image build --kernel {kernel})")
        print(d)
    else:
        from harness.vm import saved_guest
        for d in image.clean() + saved_guest.clean():  # saved guests name the images' files
            print(f"removed {d}", file=sys.stderr)
    return EXIT_WITHIN


def cmd_predict(a) -> int:
    from harness.verdict import prediction
    from harness.model import ReportingParams

    path = Path(a.result)
    path = path / "result.json" if path.is_dir() else path
    try:
        result = json.loads(path.read_text())
        result["phases"][-1]["snapshots"]["held"]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise UserError(f"{a.result}: not a result file with snapshots ({e.__class__.__name__}: {e})") from None
    try:
        params = ReportingParams(capacity=a.capacity, delay_s=a.delay, budget_divisor=a.budget_divisor,
                                 order=a.order, zone_gate=not a.no_zone_gate, budget_offset=a.budget_offset)
    except ValueError as e:
        raise UserError(str(e)) from None
    from harness.model.errors import ModelError
    try:
        p = prediction.predict(result, params)
    except ModelError as e:
        raise UserError(f"{a.result}: the model cannot run on it: {e}") from None
    shown = ("phase", "verdict", "judgement", "drop_mib", "ram_drop_mib", "metric", "predicted_mib", "predicted_lo_mib",
             "predicted_hi_mib", "predicted_seconds_to_90pct", "predicted_curve", "terms")
    if a.json:
        print(json.dumps({**p, "phases": [{k: ph.get(k) for k in shown} for ph in result["phases"]]}))
        return EXIT_WITHIN if p["verdict"] == "within" else EXIT_OUTSIDE
    m = main_phase(result)
    print(f"model on {a.result}: {m['freed_mib']} MiB freed, {result['kernel']}, "
          f"delay {a.delay} s, capacity {a.capacity}, budget divisor {a.budget_divisor}")
    print(f"  predicted drop {m['predicted_mib']:.1f} MiB in [{m['predicted_lo_mib']:.1f}, {m['predicted_hi_mib']:.1f}]"
          f"; 90% after {m['predicted_seconds_to_90pct']} s (measured with the kernel's constants: "
          f"{m['drop_mib']} MiB, 90% after {m['seconds_to_90pct']} s)")
    print("  curve (s after the free: MiB back): " + ", ".join(f"{t:g}: {v:.0f}" for t, v in m["predicted_curve"]))
    for t in m["terms"]:
        print(f"  term {t['name']}: [{t['lo_mib']:+.1f}, {t['hi_mib']:+.1f}] MiB  {t['explanation']}")
    for ph in result["phases"]:
        jd = ph.get("judgement")
        if jd:
            print(f"  phase {ph.get('phase', 'main')}: {jd['verdict'].upper()}; total {jd['total']}; "
                  f"t90 {jd['t90']}; curve: {len(jd['curve'])} sample(s) off the predicted plateaus")
            for c in jd["curve"][:3]:
                print(f"    {c}")
    if a.bitmap:
        from harness.verdict.whatif import bitmap_whatif
        try:
            w = bitmap_whatif(result)
        except ValueError as e:
            raise UserError(str(e)) from None
        print("  bitmap design (seed 001), curve: " + ", ".join(f"{t:g}: {m:.0f}" for t, m in w["bitmap"]["curve"]))
        for line in w["differences"]:
            print(f"    {line}")
    print(f"  verdict of the measured run under these constants: {p['verdict'].upper()}")
    return EXIT_WITHIN if p["verdict"] == "within" else EXIT_OUTSIDE


def cmd_history(a) -> int:
    from harness.report import history
    return history.dispatch(a)


COMMANDS = {"run": cmd_run, "shell": cmd_shell, "list": cmd_list, "image": cmd_image, "predict": cmd_predict,
            "history": cmd_history, "compare": cmd_history}


def _terminated(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so every `finally` shuts its guest down.
    signal.signal(signal.SIGTERM, _terminated)
    a = parser().parse_args(argv)
    try:
        return COMMANDS[a.cmd](a)
    except BaseException as e:  # noqa: BLE001 - an exit code that means what it says, whatever ended us
        if isinstance(e, SystemExit):
            raise
        code, msg = classify(e)
        print(f"balloon-e2e: {msg}", file=sys.stderr)
        if code == EXIT_FAILURE and "unexpected" in msg:
            traceback.print_exc(file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
