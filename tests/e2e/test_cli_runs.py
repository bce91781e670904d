"""The CLI as a user runs it, on real guests: a --workload run and its folder, a shell, and
one test per failure class, each fault injected by real means and checked by its message
and exit code (0 within, 1 outside, 2 bad input, 3 guest/QEMU/host failure, 130 interrupted).

Small on purpose (1 GiB guests, 256 MiB workloads): these run in the default suite.
"""
import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from harness.paths import REPO
from tests.e2e.explain import explain
from tests.e2e.reaping import gone

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
CLI = [str(REPO / ".venv" / "bin" / "balloon-e2e")]
SMALL = ["--memory", "1024"]
# The folder's evidence, whatever the scenario (harness/report/runfolder.py).
EVIDENCE = ("command.txt", "qemu-argv.txt", "qemu.log", "console.log", "qmp.jsonl", "samples.csv", "cli.log",
            "result.json")


def _run(args, tmp_path, timeout=280, **kw):
    return subprocess.run(CLI + args + ["--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, **kw)


def _folder(tmp_path) -> Path:
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    return d


def _no_qemu_left(folder: Path) -> None:
    argv = (folder / "qemu-argv.txt").read_text().split()
    mine = [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[:1] == argv[:1]
            and str(folder) in " ".join(p.info["cmdline"] or [])]
    assert not mine, f"QEMU left running: {[p.pid for p in mine]}"


def test_workload_exit_is_measured_and_predicted(tmp_path):
    r = _run(["run", "--workload", "memhog 256m", *SMALL, "--json"], tmp_path)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    res = json.loads(r.stdout)  # --json: one object on stdout, nothing else
    folder = _folder(tmp_path)
    for f in EVIDENCE + ("prediction.json", "plot.png"):
        assert (folder / f).is_file(), f"{f} missing from {folder}"
    full = json.loads((folder / "result.json").read_text())
    assert full["complete"] is True and res["scenario"] == "workload"
    (ph,) = full["phases"]
    assert ph["phase"] == "exit-memhog" and ph["workload_status"] == 0
    # the pages memhog held at its exit, read before the release: 256 MiB and a little
    pages = sum(n for _, n in ph["freed_pfns"])
    assert 256 * 256 <= pages <= 260 * 256, pages
    assert ph["per_block"]["violations"]["count"] == 0
    assert ph["verdict"] == "within", explain(ph)
    assert r.returncode == 0
    qmp = [json.loads(line) for line in (folder / "qmp.jsonl").read_text().splitlines()]
    assert {"gpa2hva", "quit"} <= {q["arguments"].get("command-line", "x").split()[0] if q["execute"] ==
                                   "human-monitor-command" else q["execute"] for q in qmp}
    assert (folder / "samples.csv").read_text().count("\n") > 50
    _no_qemu_left(folder)


def test_failing_workload_is_bad_input(tmp_path):
    r = _run(["run", "--workload", "echo no such input >&2; exit 3", *SMALL], tmp_path)
    assert r.returncode == 2, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "failed (status 3) before its release" in last and "no such input" in last, last
    assert "Traceback" not in r.stderr
    res = json.loads((_folder(tmp_path) / "result.json").read_text())
    assert res["complete"] is False and res["status"] == "bad input" and res["exit_code"] == 2


def test_qemu_killed_mid_run_is_a_failure_not_a_verdict(tmp_path):
    p = subprocess.Popen(CLI + ["run", "touch-free", *SMALL, "--mib", "256", "--out", str(tmp_path)], cwd=REPO,
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    qemu = None
    for line in p.stderr:
        if "guest up" in line:
            qemu = next(c.pid for c in psutil.Process(p.pid).children() if "qemu-system" in c.name())
            break
    assert qemu, "the CLI never brought a guest up"
    os.kill(qemu, signal.SIGKILL)
    rest = p.stderr.read()
    assert p.wait(timeout=120) == 3, rest
    assert "QEMU" in rest and "failed" in rest and "Traceback" not in rest, rest
    assert "marked incomplete: failed" in rest
    res = json.loads((_folder(tmp_path) / "result.json").read_text())
    assert res["status"] == "failed" and res["exit_code"] == 3 and "console.log" in res["kept"]
    assert gone(qemu)


def test_guest_that_panics_at_boot_fails_with_the_console(tmp_path):
    # rdinit= names no program: the kernel finds no init and no root fs, and panics (panic=-1, -no-reboot)
    r = _run(["run", *SMALL, "--mib", "256", "--kernel-arg", "rdinit=/no/such/init"], tmp_path, timeout=200)
    assert r.returncode == 3, r.stderr[-3000:]
    assert "QEMU exited before the console showed 'e2e: rcS done'" in r.stderr
    assert "Kernel panic" in r.stderr and "argv:" in r.stderr
    folder = _folder(tmp_path)
    assert "Kernel panic" in (folder / "console.log").read_text()
    assert json.loads((folder / "result.json").read_text())["status"] == "failed"


def test_interrupted_run_keeps_its_folder_marked_incomplete(tmp_path):
    # Ctrl-C as it reaches a foreground command: SIGINT at its default. Python keeps a SIGINT
    # it inherits ignored (a background job of a non-interactive shell has it so). Twice in
    # fresh-clone suites the CLI showed no sign of the signal and ran to its verdict (exit 0);
    # an inherited SIG_IGN is the one explanation that fits, not seen: the CLI's signal masks
    # are now in the failure's message.
    p = subprocess.Popen(CLI + ["run", "touch-free", *SMALL, "--mib", "256", "--out", str(tmp_path)], cwd=REPO,
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    qemu = None
    for line in p.stderr:
        if "releasing" in line:  # mid-phase: the samples and the phase so far must be kept
            qemu = next(c.pid for c in psutil.Process(p.pid).children() if "qemu-system" in c.name())
            break
    assert qemu, "the CLI never reached the release"
    masks = [ln.strip() for ln in Path(f"/proc/{p.pid}/status").read_text().splitlines() if ln.startswith("Sig")]
    p.send_signal(signal.SIGINT)
    rest = p.stderr.read()
    assert p.wait(timeout=60) == 130, (masks, rest)
    assert "interrupted" in rest and "QEMU quit" in rest and "marked incomplete: interrupted" in rest, rest
    folder = _folder(tmp_path)
    res = json.loads((folder / "result.json").read_text())
    assert res["complete"] is False and res["status"] == "interrupted"
    for f in EVIDENCE:
        assert (folder / f).is_file(), f"{f} missing from {folder}"
    assert gone(qemu)


def test_shell_runs_piped_commands_and_reaps_its_guest(tmp_path):
    r = subprocess.run(CLI + ["shell", "--memory", "512", "--smp", "1"], cwd=REPO, capture_output=True, text=True,
                       input="cat /proc/sys/kernel/osrelease; cat /sys/module/page_reporting/parameters/page_reporting_order\n",
                       timeout=200)
    assert r.returncode == 0, r.stderr[-3000:]
    release, order = r.stdout.split()
    assert release.startswith("6.1.") and order == "9"
    assert "QEMU quit" in r.stderr
