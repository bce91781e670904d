"""Host memory of a QEMU process: its RSS (psutil) less TCG's translation cache, and the guest
RAM mapping's RSS (smaps)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from harness.errors import GuestError

KIB = 1024
MIB = 1 << 20


@dataclass(frozen=True)
class Vma:
    start: int
    end: int
    name: str
    kb: dict  # smaps fields in kB: Rss, Pss, Anonymous, AnonHugePages, ...
    perms: str = ""  # e.g. "rw-p"


def parse_smaps(text: str) -> list[Vma]:
    """Pure: /proc/PID/smaps -> VMAs with their kB fields."""
    vmas: list[Vma] = []
    cur = None
    for line in text.splitlines():
        head = line.split(None, 5)
        if head and "-" in head[0] and not head[0].endswith(":"):
            start, _, end = head[0].partition("-")
            cur = Vma(int(start, 16), int(end, 16), head[5] if len(head) > 5 else "", {},
                      head[1] if len(head) > 1 else "")
            vmas.append(cur)
        elif cur is not None and line.endswith(" kB"):
            key, _, val = line.partition(":")
            cur.kb[key] = int(val.split()[0])
    return vmas


def mapping_at(vmas: list[Vma], hva: int) -> Vma:
    for v in vmas:
        if v.start <= hva < v.end:
            return v
    raise LookupError(f"no mapping holds host address {hva:#x}")


@dataclass(frozen=True)
class Sample:
    t: float  # time.monotonic()
    rss_mib: float  # the QEMU process, less TCG's translation cache (tcg_code_mib)
    ram_rss_mib: float  # the guest RAM mapping only
    tcg_code_mib: float = 0.0  # TCG's translation cache, 0 under KVM


def resident_kb(vma: Vma) -> int:
    """kB of a mapping backed by host memory. Hugetlb pages are outside Rss
    (fs/proc/task_mmu.c smaps_hugetlb_range counts them as Shared_Hugetlb or
    Private_Hugetlb only), so they are added; both are 0 for other mappings."""
    return vma.kb.get("Rss", 0) + vma.kb.get("Shared_Hugetlb", 0) + vma.kb.get("Private_Hugetlb", 0)


def ram_kb(vmas: list[Vma], ram_hva) -> int:
    """kB resident in the guest RAM mapping(s): `ram_hva` is one host address, or several
    (one per memory backend, e.g. per NUMA node); a mapping named twice counts once."""
    hvas = (ram_hva,) if isinstance(ram_hva, int) else tuple(ram_hva)
    found = {}
    for hva in hvas:
        v = mapping_at(vmas, hva)
        found[v.start] = v
    return sum(resident_kb(v) for v in found.values())


def tcg_code_kb(vmas: list[Vma]) -> int:
    """kB resident in TCG's translation cache: QEMU's one anonymous rwx mapping (tcg/region.c
    alloc_code_gen_buffer_anon, 1 GiB, seen as `rwxp` and unnamed in a 10.0 and a 7.2 QEMU under
    TCG). It fills, by transparent huge pages, as the guest runs code not yet translated: a
    hugetlbfs release put 2.1 MiB in it and a failing CI run had RSS 0.2 MiB up where the guest's
    RAM was outside Rss. It is the emulator's, not guest memory, so it is kept out of rss_mib."""
    return sum(v.kb.get("Rss", 0) for v in vmas if v.perms == "rwxp" and not v.name)


def sample(proc: psutil.Process, ram_hva) -> Sample:
    t = time.monotonic()
    rss = proc.memory_info().rss
    with open(f"/proc/{proc.pid}/smaps") as f:
        vmas = parse_smaps(f.read())
    ram, code = ram_kb(vmas, ram_hva) * KIB, tcg_code_kb(vmas) * KIB
    return Sample(t, (rss - code) / MIB, ram / MIB, code / MIB)


class PollingThread:
    """A daemon thread running self._run() between __enter__ and __exit__; what it keeps is
    guarded by self._cond, and a failure it meets is self.error (waiters are woken to see it)."""

    def _init_thread(self, name: str) -> None:
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self.error: Exception | None = None

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _failed(self, e: Exception) -> None:
        self.error = e
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        raise NotImplementedError


@dataclass
class Sampler(PollingThread):
    """Samples in a thread every `period` s; wait_for() blocks on a condition with a deadline."""
    pid: int
    ram_hva: int | tuple[int, ...]  # one host address per guest RAM backend (see ram_kb)
    period: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    csv_path: Path | None = None  # each sample is appended as it comes: a run cut short keeps them

    def __post_init__(self):
        self._proc = psutil.Process(self.pid)
        self._init_thread(f"sampler-{self.pid}")

    def _run(self):
        out = None
        if self.csv_path is not None:
            new = not Path(self.csv_path).exists()
            out = open(self.csv_path, "a", buffering=1)
            if new:
                out.write("unix_time,monotonic_s,qemu_rss_mib,guest_ram_rss_mib,tcg_code_mib\n")
        try:
            self._sample_until_stopped(out)
        finally:
            if out is not None:
                out.close()

    def _sample_until_stopped(self, out):
        while not self._stop.is_set():
            try:
                s = sample(self._proc, self.ram_hva)
            except (psutil.Error, OSError, LookupError) as e:
                self._failed(e)  # QEMU gone
                return
            with self._cond:
                self.samples.append(s)
                self._cond.notify_all()
            if out is not None:
                out.write(f"{time.time():.3f},{s.t:.3f},{s.rss_mib:.1f},{s.ram_rss_mib:.1f},{s.tcg_code_mib:.1f}\n")
            self._stop.wait(self.period)

    def latest(self) -> Sample:
        with self._cond:
            while not self.samples and self.error is None:
                self._cond.wait()
        if self.error is not None and not self.samples:
            raise GuestError(f"sampling QEMU {self.pid} failed (QEMU gone?): {self.error}")
        return self.samples[-1]

    def wait_for(self, cond, timeout: float, what: str) -> Sample:
        """Block until cond(samples) is true; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.samples and cond(self.samples):
                    return self.samples[-1]
                if self.error is not None:
                    raise GuestError(f"sampling QEMU {self.pid} failed (QEMU gone?) while waiting for {what}: "
                                     f"{self.error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
                self._cond.wait(left)

    def wait_until(self, cond, deadline: float) -> Sample | None:
        """The sample at which cond(samples) first held before the monotonic `deadline`, else None."""
        try:
            return self.wait_for(cond, deadline - time.monotonic(), "a condition")
        except TimeoutError:
            return None

    def since(self, t0: float) -> list[Sample]:
        with self._cond:
            return [s for s in self.samples if s.t >= t0]


def stable_for(window: float, eps_mib: float, since: float, key=lambda s: s.ram_rss_mib):
    """Condition: over the last `window` s (all after `since`) the value moved by < eps."""
    def cond(samples: list[Sample]) -> bool:
        last = samples[-1].t
        if last - since < window:
            return False
        vals = [key(s) for s in samples if s.t >= last - window]
        return max(vals) - min(vals) < eps_mib
    return cond


def fell_after(since: float, step_mib: float, key=lambda s: s.ram_rss_mib):
    """Condition: the newest sample is >= step below the level at `since` (the last sample at
    or before it)."""
    def cond(samples: list[Sample]) -> bool:
        base = next((key(s) for s in reversed(samples) if s.t <= since), None)
        return base is not None and samples[-1].t > since and base - key(samples[-1]) >= step_mib
    return cond


def own_growth(own: list[float]) -> float:
    """Pure: MiB QEMU's own memory (RSS less guest RAM) grew over a stretch of samples: the
    highest of the last five less the lowest of the first five. It toggles by 2 MiB (an
    integrity run's idle stretches: 48.5 / 50.0 / 48.0 / 50.0 MiB), so medians of five could
    land on the low level at the end and the high one at the start: that run's cycle 9 read
    0.0 MiB over a stretch in which it rose 2.0, then rose 4.3 during its own phase."""
    return max(0.0, max(own[-5:]) - min(own[:5])) if own else 0.0
