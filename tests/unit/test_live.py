"""The live panel's state and rendering are pure: fed log records, drawn without a terminal."""
import io
import logging
import sys

from rich.console import Console

from harness.report import live


def _rec(msg, **extra):
    r = logging.LogRecord("harness.x", logging.INFO, __file__, 1, msg, (), None)
    for k, v in extra.items():
        setattr(r, k, v)
    return r


def test_state_follows_the_records():
    s = live.State("balloon-e2e touch-free", t0=0.0, phase_t0=0.0)
    s = live.update(s, _rec("QEMU 7 started", qemu_pid=7), 1.0)
    s = live.update(s, _rec("free: releasing 256 MiB", phase="free", peak_mib=600.0, freed_mib=256), 5.0)
    assert (s.qemu_pid, s.phase, s.phase_t0, s.peak_mib) == (7, "free", 5.0, 600.0)
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(live.render(s, 500.0, 7.5))
    text = out.getvalue()
    assert "free  (2.5 s)" in text and "drop so far   100.0 MiB" in text and "256 MiB released" in text
    s = live.update(s, _rec("x", predicted_mib=250.0), 8.0)
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(live.render(s, 400.0, 9.0))
    assert "200.0 MiB of 250.0 predicted" in out.getvalue()
    s = live.update(s, _rec("waiting", phase="idle"), 10.0)
    assert s.peak_mib is None and s.phase_t0 == 10.0


def test_plain_handler_writes_to_the_stderr_of_the_moment(monkeypatch):
    """pytest swaps sys.stderr per test and closes the old one: a handler made in one test must
    not write to that closed file in the next."""
    log = logging.getLogger("harness.test_plain_handler")
    log.propagate = False
    log.setLevel(logging.INFO)
    h = live.plain_handler()
    log.addHandler(h)
    try:
        first, second = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stderr", first)
        log.info("one")
        first.close()
        monkeypatch.setattr(sys, "stderr", second)
        log.info("two")
        assert second.getvalue().endswith("two\n")
    finally:
        log.removeHandler(h)
