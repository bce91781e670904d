"""Progress for a person: log lines on stderr, and on a terminal a live panel (rich).

Library code only logs (logging.getLogger(__name__)); a few records carry
structured fields in `extra`, which the panel reads:
    qemu_pid        the QEMU process, whose RSS the panel shows
    phase           what the run is doing now (a release's name, "idle", ...)
    peak_mib        QEMU RSS when the release began; freed_mib: what it releases
    predicted_mib   the model's expected drop for it, when known before the release
Nothing here is needed for a result: without a terminal only the log lines show.
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field, replace

import psutil
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

FIELDS = ("qemu_pid", "phase", "peak_mib", "freed_mib", "predicted_mib")


@dataclass(frozen=True)
class State:
    title: str
    t0: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    phase_t0: float = field(default_factory=time.monotonic)
    qemu_pid: int | None = None
    peak_mib: float | None = None
    freed_mib: float | None = None
    predicted_mib: float | None = None
    last: str = ""


def update(s: State, record: logging.LogRecord, now: float) -> State:
    """Pure: the panel's state after one log record."""
    got = {k: getattr(record, k) for k in FIELDS if hasattr(record, k)}
    if "phase" in got and got["phase"] != s.phase:
        s = replace(s, phase_t0=now, peak_mib=None, freed_mib=None, predicted_mib=None)
    return replace(s, **got, last=record.getMessage())


def render(s: State, rss_mib: float | None, now: float) -> Table:
    """Pure: the panel for a state and the RSS read now."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row(s.title, f"{now - s.t0:6.1f} s")
    t.add_row("phase", f"{s.phase}  ({now - s.phase_t0:.1f} s)")
    rss = "-" if rss_mib is None else f"{rss_mib:8.1f} MiB"
    if rss_mib is not None and s.peak_mib is not None:
        rss += f"   drop so far {s.peak_mib - rss_mib:7.1f} MiB"
        if s.predicted_mib is not None:
            rss += f" of {s.predicted_mib:.1f} predicted"
        elif s.freed_mib is not None:
            rss += f" ({s.freed_mib:g} MiB released; predicted once measured)"
    t.add_row("QEMU RSS", rss)
    t.add_row("", s.last[:120])
    return t


class LiveDisplay(logging.Handler):
    """Prints each record above a live panel; the panel refreshes 4 times a second."""

    def __init__(self, title: str, console: Console | None = None):
        super().__init__(logging.INFO)
        self.console = console or Console(stderr=True)
        self.state = State(title)
        self._lines = RichHandler(console=self.console, show_path=False, show_level=False, markup=False)
        self.live = Live(get_renderable=self._panel, console=self.console, refresh_per_second=4,
                         transient=True, redirect_stderr=False, redirect_stdout=False)
        self._proc = None

    def _panel(self):
        rss = None
        if self.state.qemu_pid:
            try:
                if self._proc is None or self._proc.pid != self.state.qemu_pid:
                    self._proc = psutil.Process(self.state.qemu_pid)
                rss = self._proc.memory_info().rss / (1 << 20)
            except psutil.Error:
                rss = None
        return render(self.state, rss, time.monotonic())

    def emit(self, record: logging.LogRecord) -> None:
        self.state = update(self.state, record, time.monotonic())
        self._lines.emit(record)

    def __enter__(self):
        self.live.start()
        return self

    def __exit__(self, *exc):
        self.live.stop()


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler on whatever sys.stderr is at each record: one bound at creation kept
    writing to pytest's captured stderr of an earlier test once it was closed ("--- Logging
    error --- I/O operation on closed file" in every later test's output on that worker)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def plain_handler() -> logging.Handler:
    h = _StderrHandler()
    h.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
    h.setLevel(logging.INFO)
    return h
