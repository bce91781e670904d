"""The guest's balloon statistics through QMP, polled during a whole run next to the RSS sampler.

The device asks the guest for statistics every `guest-stats-polling-interval` seconds
(hw/virtio/virtio-balloon.c balloon_stats_poll_cb); the guest answers from
update_balloon_stats (stat-free-memory = NR_FREE_PAGES x 4 KiB: buddy pages, per-cpu list
pages not counted). QEMU stamps the answer with its receipt time in whole epoch seconds
(`last-update`). A thread reads `guest-stats` every READ_PERIOD_S and keeps each new answer
with the time of the read before it, which did not have it yet: an answer first read after a
read at or after a moment was received after that moment, without waiting for a later whole
second of its stamp (measured: a phase's wait for the answer after its scan, 1.25 s at a 1 s
read period).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from harness.vm import balloon
from harness.errors import GuestError
from harness.measure.hostmem import PollingThread

POLL_S = 1  # the device's interval (whole seconds: the shortest it takes)
READ_PERIOD_S = 0.1  # this thread's: a new answer is read at most this long after QEMU got it


@dataclass(frozen=True)
class StatsSample:
    t: float  # time.monotonic() when this thread read the answer (at most POLL_S after last_update)
    last_update: int  # QEMU's receipt of the guest's answer, epoch seconds
    free_mib: float | None  # stat-free-memory
    available_mib: float | None  # stat-available-memory
    caches_mib: float | None  # stat-disk-caches
    # time.monotonic() of this thread's read before, which did not have this answer (None: the
    # first read: the answer may be older than the poller)
    absent_at: float | None = None

    def to_row(self, t0: float) -> list:
        return [round(self.t - t0, 2), self.last_update, self.free_mib, self.available_mib, self.caches_mib]


def sample_of(stats: balloon.GuestStats, t: float, absent_at: float | None = None) -> StatsSample:
    """Pure: one guest-stats answer -> the figures kept (MiB; None where the guest sent none)."""
    mib = lambda k: None if stats.get(k) is None else round(stats.get(k) / (1 << 20), 2)  # noqa: E731
    return StatsSample(t, stats.last_update, mib("stat-free-memory"), mib("stat-available-memory"),
                       mib("stat-disk-caches"), absent_at)


@dataclass
class StatsPoller(PollingThread):
    guest: object
    period: float = READ_PERIOD_S
    samples: list[StatsSample] = field(default_factory=list)

    def __post_init__(self):
        self._init_thread("stats-poller")
        self.interval: int | None = None

    def __enter__(self):
        self.interval = balloon.set_polling(self.guest, POLL_S)
        return super().__enter__()

    def _run(self):
        last, read_before = None, None
        while not self._stop.is_set():
            t_read = time.monotonic()
            try:
                st = balloon.get_stats(self.guest)
            except (GuestError, ValueError) as e:
                self._failed(e)  # QEMU gone, or an answer it should not give
                return
            if st.last_update and st.last_update != last:
                last = st.last_update
                with self._cond:
                    self.samples.append(sample_of(st, time.monotonic(), read_before))
                    self._cond.notify_all()
            read_before = t_read  # began before this read: the next new answer came after it
            self._stop.wait(self.period)

    def since(self, t0: float) -> list[StatsSample]:
        with self._cond:
            return [s for s in self.samples if s.t >= t0]

    def next_after(self, t: float, timeout: float) -> StatsSample | None:
        """The first answer the guest gave after `t` (monotonic): absent from a read begun at or
        after `t`, or stamped in a later whole second than `t`; None if none came within
        `timeout` s."""
        epoch = time.time() - time.monotonic() + t
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [s for s in self.samples
                       if s.last_update > epoch or (s.absent_at is not None and s.absent_at >= t)]
                if got:
                    return got[0]
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return None
                self._cond.wait(left)
