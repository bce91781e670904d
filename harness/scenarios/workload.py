"""workload: the user's own command in the guest; the release is its exit, or --release CMD.

The command runs under `e2erun` (guest_images/src/e2erun.c), which traces it and
every process it forks. Without --release, each process whose exit frees at least
MIN_RELEASE_KIB is held at its exit, before the kernel drops its memory
(PTRACE_EVENT_EXIT precedes exit_mm): the guest's state is snapshotted then, the
pages it alone maps are read from /proc/PID/pagemap (`e2epfn pid`) and handed to
the phase engine as `freed_pfns`, and the exit goes ahead as the phase's release.
With --release, the workload runs until the guest RAM's RSS settles, its
processes' pages are read the same way, and the release command is the phase.

A workload that fails before its release (a held process exiting non-zero, the
command not found, nothing big enough exiting, the release command failing) is
bad input: a WorkloadError, whose message carries the workload's output.
"""
from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import GuestError, WorkloadError
from harness.scenarios.common import WORKLOAD_CPU, measuring

log = logging.getLogger(__name__)

# An exit freeing less than this is not measured: a drop of 16 MiB is over three
# times the idle RSS noise bound (prediction.NOISE_MIB, 5 MiB); a shell's own
# exit (~0.3 MiB anonymous) never qualifies.
MIN_RELEASE_KIB = 16384
OUTPUT = "/tmp/e2e-workload.log"  # the workload's stdout and stderr, in the guest
GUEST_BIN = "/usr/local/bin"  # where --copy puts files; first on the workload's PATH
PAGE = 4096


@dataclass(frozen=True)
class PfnRuns:
    """The guest pages a set of processes alone maps: (first pfn, pages) runs and, per run,
    whether it is part of a transparent huge page."""
    runs: tuple[tuple[int, int], ...]
    huge: tuple[bool, ...]

    @property
    def pages(self) -> int:
        return sum(n for _, n in self.runs)

    @property
    def huge_pages(self) -> int:
        return sum(n for (_, n), h in zip(self.runs, self.huge) if h)

    @property
    def mib(self) -> float:
        return self.pages * PAGE / (1 << 20)


def parse_event(line: str) -> tuple[str, dict[str, str]]:
    """Pure: one e2erun line, 'exit pid=7 status=0 rss_kib=65636 comm=memhog' -> ('exit', {...}).
    comm= is last and may hold spaces."""
    kind, _, rest = line.strip().partition(" ")
    fields: dict[str, str] = {}
    head, sep, comm = rest.partition("comm=")
    for tok in head.split():
        k, _, v = tok.partition("=")
        fields[k] = v
    if sep:
        fields["comm"] = comm
    return kind, fields


def parse_pfn_runs(text: str) -> PfnRuns:
    """Pure: `e2epfn pid` output -> PfnRuns. Raises ValueError on anything else."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "e2epfn-pid 1" or not lines[-1].startswith("== end"):
        raise ValueError(f"not e2epfn pid output: {text[:200]!r}")
    runs, huge = [], []
    for line in lines[1:-1]:
        tag, start, count, h = line.split()
        if tag != "P":
            raise ValueError(f"bad e2epfn pid line {line!r}")
        runs.append((int(start), int(count)))
        huge.append(h == "1")
    return PfnRuns(tuple(runs), tuple(huge))


def descendants(stats: str, root: int) -> list[int]:
    """Pure: lines of /proc/*/stat -> root and every process below it."""
    children: dict[int, list[int]] = {}
    for line in stats.splitlines():
        head, _, tail = line.rpartition(")")  # comm may hold spaces and parentheses
        if not head:
            continue
        try:
            pid, ppid = int(head.split(" (")[0]), int(tail.split()[1])
        except (ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return sorted(out)


def pfn_runs(guest, pids: list[int]) -> PfnRuns:
    return parse_pfn_runs(guest.run("e2epfn pid " + " ".join(map(str, pids))).stdout)


def output_tail(guest, chars: int = 600) -> str:
    try:
        return guest.run(f"tail -c {chars} {OUTPUT}", check=False).stdout.strip()
    except GuestError:
        return ""


def copy_in(guest, files) -> list[str]:
    """Each host file to GUEST_BIN/<its name>, executable; returns the guest paths."""
    out = []
    for f in files:
        p = Path(f)
        dest = f"{GUEST_BIN}/{p.name}"
        log.info("copying %s (%d bytes) to the guest's %s", p, p.stat().st_size, dest)
        guest.ssh.put(dest, p.read_bytes())
        out.append(dest)
    return out


class _Workload:
    """The e2erun process in the guest, spoken to line by line."""

    def __init__(self, guest, command: str, hold: bool, deadline: float):
        self.g, self.command, self.deadline = guest, command, deadline
        # pinned like e2emem (scenarios/common.py WORKLOAD_CPU): its exits free onto the per-cpu
        # lists the model reads
        cpu = WORKLOAD_CPU if guest.cfg.smp > 1 else 0
        argv = ["taskset", "-c", str(cpu), "e2erun", "-m", str(MIN_RELEASE_KIB), "-o", OUTPUT] + ([] if hold else ["-n"])
        self.p = guest.ssh.start(f"cd /root && PATH={GUEST_BIN}:$PATH exec {shlex.join(argv)} "
                                 f"sh -c {shlex.quote(command)}")
        kind, f = self.next()
        if kind != "started":
            raise GuestError(f"e2erun did not start the workload: {kind} {f}")
        self.root = int(f["pid"])

    def next(self) -> tuple[str, dict[str, str]]:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"workload {self.command!r} did not finish in time (--timeout)")
        try:
            line = self.p.read_line(left)
        except TimeoutError:
            raise TimeoutError(f"workload {self.command!r} did not finish in time (--timeout)") from None
        if not line:
            raise GuestError(f"e2erun ended without a word (workload {self.command!r})")
        return parse_event(line)

    def failed(self, what: str) -> WorkloadError:
        out = output_tail(self.g)
        return WorkloadError(f"workload {self.command!r} {what} before its release"
                             + (f"; its output ends: {' | '.join(out.splitlines()[-3:])}" if out else ""))

    def close(self) -> None:
        self.p.close()  # sends quit and waits for e2erun's exit status: no other channel opens meanwhile


def run(guest, command: str, release: str | None = None, copies=(), timeout: float = 900.0) -> dict:
    extra: dict = {"workload": command, "release": release}
    with measuring(guest) as r:
        before = r.idle
        copy_in(guest, copies)
        log.info("running the workload: %s", command, extra={"phase": "workload"})
        wl = _Workload(guest, command, hold=release is None, deadline=time.monotonic() + timeout)
        try:
            if release is None:
                _exits(r, wl)
            else:
                _release(r, wl, release)
        finally:
            wl.close()
        extra["workload_output_tail"] = output_tail(guest)
        return r.result("workload", **extra, freed_mib=round(sum(ph.freed_mib for ph in r.phases), 1),
                        rss_before_mib=round(before.rss_mib, 1), idle_noise_mib=round(r.idle_noise, 1))


def _exits(r, wl: _Workload) -> None:
    """Each qualifying exit is a phase; ends when nothing of the workload is left."""
    while True:
        kind, f = wl.next()
        if kind == "exit":
            pid, status, comm = int(f["pid"]), int(f["status"]), f.get("comm", "?")
            if status != 0:
                wl.p.send("go")
                raise wl.failed(f"failed: {comm} (pid {pid}) exited with status {status}")
            pages = pfn_runs(r.g, [pid])
            log.info("%s (pid %d) holds %.1f MiB at its exit (%d pages in %d runs, %d of THPs)", comm, pid,
                     pages.mib, pages.pages, len(pages.runs), pages.huge_pages)

            def go():
                wl.p.send("go")
                k, g = wl.next()
                if k != "gone":
                    raise GuestError(f"e2erun: expected 'gone pid={pid}', got {k} {g}")
            ph = r.release(f"exit-{comm}", go, round(pages.mib, 1), freed_pfns=list(pages.runs))
            ph.pid, ph.comm, ph.rss_anon_kib, ph.freed_huge_pages = pid, comm, int(f["rss_kib"]), pages.huge_pages
        elif kind == "done":
            status = int(f["status"])
            if not r.phases:
                if status != 0:
                    raise wl.failed(f"failed (status {status})")
                raise WorkloadError(f"workload {wl.command!r} ended without a process holding >= "
                                    f"{MIN_RELEASE_KIB // 1024} MiB of its own at its exit: nothing to measure")
            r.phases[-1].workload_status = status
            return
        else:
            raise GuestError(f"e2erun: unexpected line {kind} {f}")


def _release(r, wl: _Workload, release: str) -> None:
    """The workload runs until the guest RAM's RSS settles; then `release` is the phase."""
    log.info("waiting for the workload's memory to settle", extra={"phase": "workload"})
    r.settle(time.monotonic(), "the workload's memory to settle")
    if wl.p.chan.recv_ready():  # e2erun said something: with -n that is only `done`
        kind, f = wl.next()
        if kind == "done":
            raise wl.failed(f"ended (status {f['status']})")
    pids = descendants(r.g.run("cat /proc/[0-9]*/stat 2>/dev/null", check=False).stdout, wl.root)
    pages = pfn_runs(r.g, pids)
    log.info("workload processes %s hold %.1f MiB", pids, pages.mib)

    def act():
        res = r.g.run(release, check=False, timeout=300)
        if res.status != 0:
            raise WorkloadError(f"release command {release!r} exited {res.status}: "
                                f"{(res.stderr or res.stdout).strip()[-300:]}")
    ph = r.release("release", act, round(pages.mib, 1), freed_pfns=list(pages.runs))
    ph.pids, ph.freed_huge_pages = pids, pages.huge_pages
    r.g.run(f"kill -9 {' '.join(map(str, pids))} 2>/dev/null", check=False)
