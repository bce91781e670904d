"""Live migration over a unix socket to a second QEMU, sampled as typed records.

The destination is a Guest with the source's config and argv plus `-incoming unix:PATH`
(harness/vm/qemu_argv.py Resources.incoming): same RAM, same devices, its own QMP socketpair,
console log and SSH port. It does not boot; after the switch-over it runs the source's
guest, which still holds the source's SSH key (the same cache key pair, harness/vm/keys.py).

QEMU facts used here (QEMU 7.2 and 10.0 migration/migration.c, migration/ram.c):
- `query-migrate` `ram`: `normal` pages sent whole (8 + 4096 B each), `duplicate` pages
  sent as zero pages (8 + 1 B), `remaining` bytes still dirty, `dirty-sync-count` bitmap
  syncs so far. `transferred` counts RAM records only in 7.2 and the whole stream in
  10.0, so the pages, not the bytes, are what the model compares.
- `max-bandwidth` (bytes/s) limits a running migration at once (migrate_params_apply).
- Free page hints clear pages from the dirty bitmap and from `remaining` as they arrive
  (migration/ram.c qemu_guest_free_page_hint).
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import GuestError
from harness.vm.guest import Guest
from harness.vm.ssh import Session

PAGE = 4096
MIB = 1 << 20


# --- query-migrate as records (pure) -------------------------------------------------

@dataclass(frozen=True)
class MigrationSample:
    t: float  # seconds since `migrate` was issued
    status: str
    total_bytes: int
    transferred_bytes: int
    remaining_bytes: int
    normal_pages: int
    duplicate_pages: int
    dirty_sync_count: int
    src_ram_rss_mib: float | None = None  # the source's guest RAM mapping at the same moment
    dst_ram_rss_mib: float | None = None


def parse_query_migrate(reply: dict, t: float) -> MigrationSample:
    """Pure: a `query-migrate` reply -> a sample. Before setup there is no `ram` (zeros).
    Raises ValueError on a reply without `status` (not a query-migrate reply)."""
    if "status" not in reply:
        raise ValueError(f"query-migrate reply without status: {sorted(reply)}")
    ram = reply.get("ram") or {}
    return MigrationSample(
        t=round(t, 3), status=reply["status"],
        total_bytes=int(ram.get("total", 0)), transferred_bytes=int(ram.get("transferred", 0)),
        remaining_bytes=int(ram.get("remaining", 0)), normal_pages=int(ram.get("normal", 0)),
        duplicate_pages=int(ram.get("duplicate", 0)), dirty_sync_count=int(ram.get("dirty-sync-count", 0)))


TERMINAL = ("completed", "failed", "cancelled")


def hint_phase_over(samples: list[MigrationSample], quiet_s: float, max_drop_bytes: int) -> bool:
    """Pure: the guest has stopped hinting: `remaining` fell by less than `max_drop_bytes`
    over the last `quiet_s` seconds of the throttled first round (what throttled sending
    alone can clear; see the scenario), and the first sync has happened."""
    live = [s for s in samples if s.dirty_sync_count >= 1 and s.status == "active"]
    if not live or live[-1].t - live[0].t < quiet_s:
        return False
    window = [s for s in live if s.t >= live[-1].t - quiet_s]
    return window[0].remaining_bytes - window[-1].remaining_bytes < max_drop_bytes


def hinted_drops(samples: list[MigrationSample], sent_bytes_per_page: int = 9) -> int:
    """Pure: bytes by which `remaining` fell faster than the pages sent can explain, summed
    over the samples of the first round: a host-side measure of the hints (each page sent
    lowers `remaining` by 4096 whatever it costs on the wire)."""
    out = 0
    first = [s for s in samples if s.dirty_sync_count == 1 and s.status == "active"]
    for a, b in zip(first, first[1:]):
        sent = (b.normal_pages + b.duplicate_pages - a.normal_pages - a.duplicate_pages) * PAGE
        out += max(0, a.remaining_bytes - b.remaining_bytes - sent)
    return out


# --- `info ramblock` (pure) -----------------------------------------------------------

@dataclass(frozen=True)
class RamBlock:
    name: str
    used_bytes: int


_SIZE = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_ramblocks(text: str) -> list[RamBlock]:
    """Pure: HMP `info ramblock` -> blocks. A line: name, page size ("4 KiB"), then offset,
    used and total as hex bytes; 10.0 adds the host address (HVA) and RO columns."""
    out = []
    for line in text.splitlines():
        f = line.split()
        hexes = [x for x in f[1:] if re.fullmatch(r"0x[0-9a-fA-F]+", x)]
        if f and len(hexes) >= 3:
            out.append(RamBlock(f[0], int(hexes[1], 16)))
    if not out:
        raise ValueError(f"info ramblock: no blocks in {text[:200]!r}")
    return out


# --- host reads of guest RAM contents ----------------------------------------------------

def nonzero_pages(pid: int, hva: int, pages: int, held: bytes) -> bytearray:
    """out[i] = 1 if page i of the mapping at `hva` holds a non-zero byte. Only pages the
    host holds (`held[i]`, pagemap) are read: an absent anonymous page reads as zero, and
    reading it through /proc/PID/mem would fault it in."""
    out = bytearray(pages)
    zero = bytes(PAGE)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
        for m in re.finditer(rb"\x01+", bytes(held[:pages])):
            f.seek(hva + m.start() * PAGE)
            data = f.read((m.end() - m.start()) * PAGE)
            mv = memoryview(data)
            for k in range(len(data) // PAGE):
                if mv[k * PAGE:(k + 1) * PAGE] != zero:
                    out[m.start() + k] = 1
    return out


# --- the destination -------------------------------------------------------------------

class Destination(Guest):
    """A second QEMU with the source's config, waiting on `-incoming unix:PATH`."""
    destination = True

    def __init__(self, source: Guest, progress=lambda m: None):
        super().__init__(source.cfg, source.parts, start="boot")  # the config alone: Guest's other parameters differ across branches
        self.progress = progress
        self.socket_path: Path | None = None  # in its run directory, made at launch

    def launch(self) -> "Destination":
        self._make_rundir()
        self.socket_path = self.rundir / "migrate.sock"  # in our private 0700 run directory
        self.incoming = f"unix:{self.socket_path}"
        try:
            self._start_backed()
            self.t_start = time.monotonic()
            deadline = time.monotonic() + 30
            while not self.socket_path.exists():  # QEMU listens before it accepts QMP commands
                if not self.alive() or time.monotonic() > deadline:
                    raise self._error("the destination did not open its incoming socket")
                time.sleep(0.05)  # poll of a path QEMU creates; the deadline bounds it
            return self
        except BaseException:
            self.shutdown()
            raise

    def attach(self, timeout: float = 60.0) -> float:
        """After the switch-over: a fresh SSH session to the migrated guest. Seconds waited."""
        self.ssh = Session(self.ssh_port, self._key)
        try:
            s = self.ssh.wait(time.monotonic() + timeout, alive=self.alive)
        except (TimeoutError, GuestError) as e:
            raise GuestError(f"the migrated guest did not answer on SSH: {e}\nconsole (tail):\n"
                             f"{self.console_tail(40)}") from None
        self.boot_s = time.monotonic() - self.t_start
        return s


def sample(src: Guest, t0: float) -> MigrationSample:
    return parse_query_migrate(src.qmp_cmd("query-migrate"), time.monotonic() - t0)


def as_json(samples: list[MigrationSample]) -> list[dict]:
    return [asdict(s) for s in samples]


# --- a guest workload that outlives its SSH session -------------------------------------

class DetachedWorkload:
    """e2emem (guest_images/src/e2emem.c) reading a FIFO, detached from SSH: the source's
    SSH connection does not survive the switch-over (its host end is the source QEMU's
    slirp), and e2emem exits, unmapping its regions, on EOF. A `sleep` holds the FIFO's
    write end so e2emem never sees EOF; each command is written to the FIFO and its reply
    read from e2emem's output file, through whichever guest's SSH session is current."""

    DIR = "/tmp/e2e-wl"

    def __init__(self, guest: Guest):
        self.g = guest
        d = self.DIR
        # The set-up is its own list, run to the end before the two background jobs start
        # (`a && b & c` would put a and b in the background too, racing the first ask).
        guest.run(f"rm -rf {d}; mkdir -p {d} && mkfifo {d}/in && : > {d}/out || exit 1; "
                  f"setsid sh -c 'e2emem < {d}/in > {d}/out 2>&1' < /dev/null > /dev/null 2>&1 & "
                  f"setsid sh -c 'exec sleep 2147483647 > {d}/in' < /dev/null > /dev/null 2>&1 &")
        self.lines = 0

    def ask(self, line: str, timeout: float = 180) -> str:
        if not re.fullmatch(r"[A-Za-z0-9 ]+", line):
            raise ValueError(f"workload command {line!r}: letters, digits and spaces only")
        n = self.lines + 1
        d = self.DIR
        # one round trip: write the command, wait for reply line n, print it
        out = self.g.run(f"echo '{line}' > {d}/in; while [ $(wc -l < {d}/out) -lt {n} ]; do sleep 0.05; done; "
                         f"sed -n '{n}p' {d}/out", timeout=timeout).stdout.strip()
        self.lines = n
        if not out.startswith("ok"):
            raise GuestError(f"e2emem (detached): {line!r} -> {out or 'nothing'}")
        return out

    def use(self, guest: Guest) -> None:
        """Speak to the same workload through another guest object (the destination)."""
        self.g = guest
