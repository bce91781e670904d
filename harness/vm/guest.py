"""One guest: launch QEMU, talk QMP and SSH, shut down and reap, whatever happens.

QMP runs over a socketpair (no path, no port). The console goes to a file in a
private 0700 run directory. QEMU gets PR_SET_PDEATHSIG=SIGKILL, so it dies
with the process that launched it even if that process is SIGKILLed.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness.vm import accel, hostsetup, keys, qemu_argv, qemu_bin, saved_guest

from harness.measure import guestfacts, perblock

from harness.build import image
from harness.config import GuestConfig
from harness.errors import GuestError, LaunchError
from harness.build.image import Image
from harness.vm.qemu_bin import Qemu
from harness.vm.ssh import Session

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
# Console lines that mean the guest kernel is in trouble, whatever the test measured.
FAULTS = re.compile(r"Kernel panic|Oops|BUG:|Call Trace|general protection fault|WARNING: CPU|page allocation failure")
_libc = ctypes.CDLL(None, use_errno=True)
# One QMP exchange at a time in this process, whichever guest: qemu.qmp's legacy client runs
# each call to completion on asyncio's default event loop, which every client made in the
# main thread shares; a stats poller's thread on the source and the main thread on a migration
# destination at once raised "This event loop is already running" (a fresh-clone suite).
QMP_LOCK = threading.Lock()


def _child_setup(thp_disable: bool = False):
    # Runs in the child between fork and exec. PDEATHSIG fires when the
    # launching *thread* exits, so guests are launched from the main thread.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if thp_disable:
        hostsetup.thp_disable()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ticks(pid: int) -> int:
    """When the process started, in clock ticks since boot (/proc/PID/stat field 22). Not its
    wall-clock create time: that is boot time plus these ticks, and the boot time the kernel
    reports moves when the wall clock is stepped, which once made a live worker's run
    directory look stale to the other worker's sweep (deleted mid-test)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


def _owner_tag() -> str:
    pid = os.getpid()
    return f"{pid} {start_ticks(pid)}"


def sweep_stale_rundirs() -> list[Path]:
    """Remove run directories whose launcher died without cleaning up (e.g. SIGKILL).

    Each run directory names its owner (pid and start_ticks, so a reused pid does
    not count); only our own user's directories are touched. A directory whose tag
    does not parse (an older format, or being written) is left alone.
    """
    removed = []
    for d in Path(tempfile.gettempdir()).glob("balloon-e2e-*"):
        try:
            if d.stat().st_uid != os.getuid():
                continue
            pid, start = (int(x) for x in (d / "owner").read_text().split())
        except (OSError, ValueError):
            continue  # not ours, or being created right now
        try:
            alive = start_ticks(pid) == start
        except (OSError, ValueError, IndexError):
            alive = False                   # no such process
        if not alive:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class Provisioned:
    """What a configuration runs on: its image, its QEMU, the accelerator `auto` resolved to."""
    image: Image
    qemu: Qemu
    accel: str


@lru_cache(maxsize=None)
def _provision(kernel: str, modules: str | None, qemu: str | None, accel_spec: str) -> Provisioned:
    resolved = accel.probe(accel_spec)  # first: a bad accelerator is an error before any build
    return Provisioned(image.get(kernel, modules=modules), qemu_bin.find(qemu), resolved)


def provision(cfg: GuestConfig) -> Provisioned:
    """A configuration's image, QEMU and accelerator, looked up once per process: finding them
    runs apt-cache, gcc and QEMU itself and hashes the image recipe (~1.7 s a guest)."""
    return _provision(cfg.kernel, cfg.modules, cfg.qemu, cfg.accel)


SAVED_BOOT_DIR = "saved-boot"  # in a guest's run directory: the boot that built its saved guest


class Guest:
    incoming: str | None = None  # set by a migration destination (harness/vm/migration.py) and a restore
    destination = False  # a live migration's destination (harness/vm/migration.py)
    BOOT_TIMEOUT = 180.0  # s to SSH-ready; TCG boots take ~10 s here, 2 parallel guests ~2x

    def __init__(self, cfg: GuestConfig, parts: Provisioned, rundir: Path | None = None, start: str = "restore"):
        """No I/O (Guest.provisioned looks the parts up; launch makes the run directory).
        rundir: where the console, QEMU log, argv and QMP transcript go, kept after shutdown
        (the CLI's run folder); None: a private temporary directory, made at launch and removed
        at shutdown. start: "restore" a saved guest of this configuration
        (harness/vm/saved_guest.py; built first if missing) or "boot" it; a configuration that
        cannot restore boots, and `start_note` says why."""
        if start not in saved_guest.STARTS:
            raise ValueError(f"start {start!r} not one of {saved_guest.STARTS}")
        self.parts = parts
        self.image, self.qemu = parts.image, parts.qemu
        self.cfg = replace(cfg, accel=parts.accel)
        self.start_note = saved_guest.unrestorable(self.cfg) if start == "restore" else None
        self.start_mode = "boot" if self.start_note else start
        self.proc: subprocess.Popen | None = None
        self.qmp: QEMUMonitorProtocol | None = None
        self.qmp_lock = QMP_LOCK  # one exchange at a time: the stats poller's thread shares it
        self.ssh: Session | None = None
        self.argv: list[str] = []
        self.timings: dict[str, float] = {}  # seconds: start_s (QEMU start to SSH), and a restore's parts
        self._host = ExitStack()  # what the host lends this guest's RAM (hugetlb pages, a mount)
        self.mem_path: str | None = None
        self.saved_meta: dict | None = None  # a restore's saved guest (harness/vm/saved_guest.py)
        # where the guest kernel keeps its per-cpu lists (harness/measure/pcplists.py), found
        # once (perblock.pcp_argv); a str: why they cannot be read
        self.pcp_targets = None
        self.keeps_rundir = rundir is not None
        self.rundir: Path | None = Path(rundir) if rundir is not None else None

    @classmethod
    def provisioned(cls, cfg: GuestConfig, rundir: Path | None = None, start: str = "restore") -> "Guest":
        """A guest of this configuration on its image and QEMU (provision: once per process)."""
        return cls(cfg, provision(cfg), rundir, start)

    def _make_rundir(self) -> None:
        if self.keeps_rundir:
            self.rundir.mkdir(parents=True, exist_ok=True)
        elif self.rundir is None:
            sweep_stale_rundirs()
            self.rundir = Path(tempfile.mkdtemp(prefix="balloon-e2e-"))  # mode 0700
            (self.rundir / "owner").write_text(_owner_tag())

    @property
    def console_log(self) -> Path:
        return self.rundir / "console.log"

    @property
    def qemu_log(self) -> Path:
        return self.rundir / "qemu.log"

    @property
    def qmp_log(self) -> Path:
        return self.rundir / "qmp.jsonl"

    # --- lifecycle ---------------------------------------------------------

    def _start_backed(self) -> None:
        """Guest RAM's backing, then QEMU, retried when the forwarded SSH port was taken."""
        self.mem_path = self._host.enter_context(hostsetup.backing(self.cfg, self.rundir))
        for attempt in range(5):
            if self._start_qemu():
                return
            # another process took the forwarded port between our probe and QEMU's bind
            log.info("SSH port taken, retrying (%d)", attempt + 1)
        raise self._error("could not forward an SSH port after 5 tries")

    def launch(self) -> "Guest":
        self._make_rundir()
        if self.start_mode == "restore" and self.incoming is None:
            return self._restore()
        try:
            self._start_backed()
            self.ssh = Session(self.ssh_port, self._key)
            deadline = time.monotonic() + self.BOOT_TIMEOUT
            # The console says when rcS is done; SSH attempts before that would
            # hang in slirp until their own timeout.
            self.wait_console("e2e: rcS done", deadline)
            return self._ssh_ready(deadline, "guest")
        except BaseException:
            self.shutdown()
            raise

    def _ssh_ready(self, deadline: float, what: str) -> "Guest":
        """Wait for the guest's SSH; the start's time from QEMU's start (boot or restore)."""
        try:
            self.ssh_wait_s = self.ssh.wait(deadline, alive=self.alive)
        except (TimeoutError, GuestError) as e:
            raise self._error(f"{what} did not answer on SSH: {e}") from None
        self.boot_s = time.monotonic() - self.t_start
        self.timings["start_s"] = round(self.boot_s, 3)
        return self

    # --- restore -------------------------------------------------------------

    def portable_argv(self) -> list[str]:
        """Pure given the config: the argv with its host-only parts fixed (QMP fd, console,
        SSH port, disk path, RAM path): what a saved guest's key is made from."""
        _, pub = keys.key_pair()
        return qemu_argv.build(self.cfg, self._resources(
            qmp_fd=3, console_log="console.log", ssh_port=22, pub=pub, mem_path=None,
            disk="disk.raw" if self.cfg.disk_mib else None, incoming=None))

    def _resources(self, *, qmp_fd: int, console_log: str, ssh_port: int, pub: str, mem_path: str | None,
                   disk: str | None, incoming: str | None) -> qemu_argv.Resources:
        """This guest's image and QEMU, with the host-only parts given."""
        return qemu_argv.Resources(
            qemu=str(self.qemu.path), kernel=str(self.image.kernel), initrd=str(self.image.initrd),
            base_cmdline=self.image.cmdline, qmp_fd=qmp_fd, console_log=console_log, ssh_port=ssh_port,
            ssh_pubkey_b64=pub, data_dirs=tuple(str(d) for d in self.qemu.data_dirs), mem_path=mem_path,
            disk=disk, incoming=incoming)

    def saved(self) -> saved_guest.Saved:
        return saved_guest.Saved(saved_guest.key_of(
            self.portable_argv(), saved_guest.qemu_identity(Path(self.qemu.path), self.qemu.version),
            saved_guest.host_identity()))

    def _restore(self) -> "Guest":
        """QEMU with `-incoming exec:cat STATE` of this configuration's saved guest, `cont`, SSH."""
        saved = self.saved()
        t = time.monotonic()
        meta = saved_guest.ensure(saved, self._build_saved)
        self.timings["saved_wait_s"] = round(time.monotonic() - t, 3)  # 0 when it was there
        self.saved_meta = meta
        self.incoming = f"exec:cat {shlex.quote(str(saved.state))}"
        try:
            self._start_backed()
            status = saved_guest.wait_migration(self, saved_guest.LOAD_TIMEOUT_S, "restoring the saved guest")
            if status != "completed":
                raise self._error(f"restoring the saved guest {saved.key}: migration {status}")
            self.timings["load_s"] = round(time.monotonic() - self.t_start, 3)
            if self.qmp_cmd("query-status").get("status") != "running":
                self.qmp_cmd("cont")
            self.ssh = Session(self.ssh_port, self._key)
            return self._ssh_ready(time.monotonic() + self.BOOT_TIMEOUT, "the restored guest")
        except BaseException:
            self.shutdown()
            raise

    def _build_saved(self, path: Path) -> dict:
        """Boot this configuration, wait until nothing is left to report, save it to `path`."""
        log.info("saving a booted guest for restores (once per configuration)", extra={"phase": "save"})
        # its logs go with this guest's (a run folder keeps them); a boot that fails leaves its
        # console and QEMU log where this guest's would be, the evidence of what failed
        g = Guest(self.cfg, self.parts, rundir=self.rundir / SAVED_BOOT_DIR, start="boot")
        try:
            try:
                g.launch()
            except BaseException:
                for f in (g.console_log, g.qemu_log, g.rundir / "qemu-argv.txt"):
                    if f.exists():
                        shutil.copy(f, self.rundir / f.name)
                raise
            t = time.monotonic()
            stuck = []  # pending once the passes were over: nothing asks a pass for them (perblock.wait_reported)
            if self.cfg.reporting:
                done = perblock.wait_reported(g, guestfacts.effective_order(guestfacts.reporting_order(g)))
                stuck = sorted([b.head, b.order] for b in perblock.pending(done))
            passes_s = time.monotonic() - t
            save_s = saved_guest.save(g, path)
            argv = g.argv
        finally:
            g.shutdown()
        return {"argv": shlex.join(argv), "kernel": self.image.kernel_release, "qemu": self.qemu.version,
                "boot_s": round(g.boot_s, 2), "boot_passes_s": round(passes_s, 2), "save_s": round(save_s, 2),
                "bytes": path.stat().st_size, "created": time.time(), "stuck": stuck}

    def _disk(self) -> str | None:
        """A sparse raw file in the private run directory: reads of it are zeros, costs no space."""
        if not self.cfg.disk_mib:
            return None
        path = self.rundir / "disk.raw"
        with open(path, "wb") as f:
            f.truncate(self.cfg.disk_mib << 20)
        return str(path)

    def _start_qemu(self) -> bool:
        self._key, pub = keys.key_pair()
        ours, theirs = socket.socketpair()
        self.ssh_port = _free_port()
        self.argv = qemu_argv.build(self.cfg, self._resources(
            qmp_fd=theirs.fileno(), console_log=str(self.console_log), ssh_port=self.ssh_port, pub=pub,
            mem_path=self.mem_path, disk=self._disk(), incoming=self.incoming))
        (self.rundir / "qemu-argv.txt").write_text(shlex.join(self.argv) + "\n")
        self.t_start = time.monotonic()
        with open(self.qemu_log, "wb") as qemu_out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=qemu_out, stderr=subprocess.STDOUT,
                                         pass_fds=[theirs.fileno()],
                                         preexec_fn=lambda: _child_setup(self.cfg.host_thp is False),
                                         start_new_session=True)  # Ctrl-C reaches us, we shut QEMU down
        theirs.close()
        self.qmp = QEMUMonitorProtocol(ours)
        self.qmp.settimeout(30)
        try:
            with self.qmp_lock:
                self.qmp.connect()
        except Exception as e:
            self.proc.wait(timeout=10)
            if re.search(r"host forwarding|Could not set up host", tail(self.qemu_log)):
                self._reap()
                return False
            raise self._error(f"QEMU did not start: {e}") from None
        log.info("QEMU %d started", self.proc.pid, extra={"qemu_pid": self.proc.pid})
        return True

    def wait_console(self, text: str, deadline: float) -> None:
        while text not in self.console_tail(200):
            if self.proc.poll() is not None:
                raise self._error(f"QEMU exited before the console showed {text!r}")
            if time.monotonic() > deadline:
                raise self._error(f"the console did not show {text!r} in time")
            time.sleep(0.05)  # poll interval of a log file; the deadline bounds the wait

    def _error(self, reason: str) -> LaunchError:
        code = self.proc.poll() if self.proc else None
        return LaunchError(reason, self.argv, code, tail(self.qemu_log, 20), tail(self.console_log, 30))

    def shutdown(self, keep_logs: bool = False) -> str:
        """Soft (QMP quit), then hard (SIGKILL); always reaped. Idempotent. Returns how it ended."""
        how = "not started"
        if self.ssh:
            self.ssh.close()
            self.ssh = None
        if self.proc is not None and self.proc.poll() is None:
            how = "quit"
            try:
                with self.qmp_lock:
                    reply = self.qmp.cmd("quit")
                self._transcribe("quit", {}, reply)
                self.proc.wait(timeout=10)
            except Exception:
                how = "killed"
        elif self.proc is not None:
            how = f"had exited ({self.proc.returncode})"
        self._reap()
        self._host.close()  # after QEMU is gone: its huge pages are free again
        if self.rundir is None:
            pass  # never launched
        elif self.keeps_rundir:
            (self.rundir / "disk.raw").unlink(missing_ok=True)  # sparse scratch, no evidence
        elif not keep_logs:
            shutil.rmtree(self.rundir, ignore_errors=True)
        if how == "killed":
            log.warning("QEMU %d did not quit on QMP `quit` within 10 s: killed", self.proc.pid)
        return how

    def _reap(self):
        if self.qmp is not None:
            try:
                with self.qmp_lock:
                    self.qmp.close()
            except Exception:
                pass
            self.qmp = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.launch()

    def __exit__(self, *exc):
        self.shutdown()

    # --- queries -----------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def qmp_cmd(self, cmd: str, **args):
        """A QMP command; a QEMU that died or hung up is a GuestError like any other guest failure."""
        if self.qmp is None:
            raise GuestError(f"QMP {cmd}: QEMU not running")
        try:
            with self.qmp_lock:
                reply = self.qmp.cmd(cmd, **args)
        except (QMPError, OSError, EOFError) as e:
            self._transcribe(cmd, args, None, error=f"{e.__class__.__name__}: {e}")
            raise GuestError(f"QMP {cmd} failed ({e.__class__.__name__}: {e}); QEMU exit code {self.proc.poll()}") from e
        self._transcribe(cmd, args, reply)
        return reply

    def _transcribe(self, cmd: str, args: dict, reply, error: str | None = None) -> None:
        """One line per QMP exchange in qmp.jsonl: the evidence of what was asked and answered."""
        entry = {"t": round(time.time(), 3), "execute": cmd, "arguments": args}
        entry.update({"error": error} if error else {"return": reply})
        with open(self.qmp_log, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")

    def hmp(self, command: str) -> str:
        return self.qmp_cmd("human-monitor-command", **{"command-line": command})

    def ram_hva(self, gpa: int = 0) -> int:
        """Host virtual address of guest-physical `gpa`, from QEMU itself (HMP gpa2hva)."""
        out = self.hmp(f"gpa2hva {gpa:#x}")
        m = re.search(r"is (0x[0-9a-f]+)", out)
        if not m:
            raise GuestError(f"gpa2hva {gpa:#x}: {out.strip()}")
        return int(m.group(1), 16)

    def ram_hvas(self) -> tuple[int, ...]:
        """Host address of every guest RAM backend: one per NUMA node, found through each node's
        first page (the lowest start_pfn of its populated zones in the guest's /proc/zoneinfo)."""
        if self.cfg.numa_nodes == 1:
            return (self.ram_hva(0),)
        first: dict[int, int] = {}
        node = None
        for line in self.run("cat /proc/zoneinfo").stdout.splitlines():
            if m := re.match(r"Node (\d+), zone", line):
                node = int(m.group(1))
            elif (m := re.match(r"\s+start_pfn:\s+(\d+)", line)) and node is not None:
                first[node] = min(first.get(node, int(m.group(1))), int(m.group(1)))
        if len(first) != self.cfg.numa_nodes:
            raise GuestError(f"the guest shows RAM on nodes {sorted(first)}, configured {self.cfg.numa_nodes}")
        return tuple(self.ram_hva(pfn * 4096) for _, pfn in sorted(first.items()))

    def query_balloon(self) -> dict:
        return self.qmp_cmd("query-balloon")

    def console_tail(self, lines: int = 30) -> str:
        return tail(self.console_log, lines)

    def check_healthy(self) -> None:
        """Raise GuestError if QEMU died or the console shows a kernel fault."""
        bad = [line for line in self.console_tail(100000).splitlines() if FAULTS.search(line)]
        if bad or not self.alive():
            why = f"guest kernel fault: {bad[0].strip()}" if bad else f"QEMU exited ({self.proc.poll()})"
            raise GuestError(f"{why}\nconsole (tail):\n{self.console_tail(40)}")

    def run(self, cmd: str, **kw):
        return self.ssh.run(cmd, **kw)
