"""The guest's balloon statistics through QMP, polled during a whole run next to the RSS sampler.

The device asks the guest for statistics every `guest-stats-polling-interval` seconds
(hw/virtio/virtio-balloon.c balloon_stats_poll_cb); the guest answers from
update_balloon_stats (stat-free-memory = NR_FREE_PAGES x 4 KiB: buddy pages, per-cpu list
pages not counted). QEMU stamps the answer with its receipt time in whole epoch seconds
(`last-update`). A thread reads `guest-stats` once per period and keeps each new answer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import balloon
from .errors import GuestError
from .hostmem import PollingThread

POLL_S = 1  # the device's interval (whole seconds) and this thread's period


@dataclass(frozen=True)
class StatsSample:
    t: float  # time.monotonic() when this thread read the answer (at most POLL_S after last_update)
    last_update: int  # QEMU's receipt of the guest's answer, epoch seconds
    free_mib: float | None  # stat-free-memory
    available_mib: float | None  # stat-available-memory
    caches_mib: float | None  # stat-disk-caches

    def to_row(self, t0: float) -> list:
        return [round(self.t - t0, 2), self.last_update, self.free_mib, self.available_mib, self.caches_mib]


def sample_of(stats: balloon.GuestStats, t: float) -> StatsSample:
    """Pure: one guest-stats answer -> the figures kept (MiB; None where the guest sent none)."""
    mib = lambda k: None if stats.get(k) is None else round(stats.get(k) / (1 << 20), 2)  # noqa: E731
    return StatsSample(t, stats.last_update, mib("stat-free-memory"), mib("stat-available-memory"),
                       mib("stat-disk-caches"))


@dataclass
class StatsPoller(PollingThread):
    guest: object
    period: float = POLL_S
    samples: list[StatsSample] = field(default_factory=list)

    def __post_init__(self):
        self._init_thread("stats-poller")
        self.interval: int | None = None

    def __enter__(self):
        self.interval = balloon.set_polling(self.guest, POLL_S)
        return super().__enter__()

    def _run(self):
        last = None
        while not self._stop.is_set():
            try:
                st = balloon.get_stats(self.guest)
            except (GuestError, ValueError) as e:
                self._failed(e)  # QEMU gone, or an answer it should not give
                return
            if st.last_update and st.last_update != last:
                last = st.last_update
                with self._cond:
                    self.samples.append(sample_of(st, time.monotonic()))
                    self._cond.notify_all()
            self._stop.wait(self.period)

    def since(self, t0: float) -> list[StatsSample]:
        with self._cond:
            return [s for s in self.samples if s.t >= t0]

    def next_after(self, t: float, timeout: float) -> StatsSample | None:
        """The first answer the guest gave after `t` (monotonic; judged by QEMU's receipt stamp,
        so up to a second later), or None if none came within `timeout` s."""
        epoch = time.time() - time.monotonic() + t
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [s for s in self.samples if s.last_update > epoch]
                if got:
                    return got[0]
                left = deadline - time.monotonic()
                if left <= 0 or self.error is not None:
                    return None
                self._cond.wait(left)
