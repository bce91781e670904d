"""Errors the suite raises on purpose, and what each means as an exit code.

Exit codes (harness/cli.py): 0 the measurement is within the prediction, 1
outside it, 2 bad input (a UserError: the message alone says what to do), 3 the
guest, QEMU or the host failed (no verdict could be reached), 130 interrupted.
A failure never exits 1: 1 is a verdict.
"""
from __future__ import annotations

import subprocess

EXIT_WITHIN, EXIT_OUTSIDE, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Interrupted(KeyboardInterrupt):
    """A signal asked us to stop (SIGTERM): unwinds like Ctrl-C, so every guest is shut down."""


class UserError(Exception):
    """Bad input or an unusable host: the message alone says what to do."""


class WorkloadError(UserError):
    """The user's workload failed before its release (bad input: the workload, not the suite)."""


class HostError(Exception):
    """The host failed under us: a read of /proc, a helper program, a timeout of a subprocess."""


class LaunchError(Exception):
    """QEMU did not start or the guest did not come up; carries the evidence."""

    def __init__(self, reason: str, argv: list[str] | None = None, exitcode: int | None = None,
                 qemu_log: str = "", console: str = ""):
        self.reason, self.argv, self.exitcode = reason, argv, exitcode
        self.qemu_log, self.console = qemu_log, console
        super().__init__(self.render())

    def render(self) -> str:
        parts = [self.reason]
        if self.exitcode is not None:
            parts.append(f"QEMU exit code: {self.exitcode}")
        if self.argv:
            parts.append("argv: " + " ".join(self.argv))
        if self.qemu_log.strip():
            parts.append("QEMU log (tail):\n" + self.qemu_log)
        if self.console.strip():
            parts.append("console (tail):\n" + self.console)
        return "\n".join(parts)


class GuestError(Exception):
    """A command in the guest failed, or the guest faulted."""


def _failure_types() -> tuple[type, ...]:
    # Imported here: errors.py is imported by everything, these modules import it.
    import paramiko
    import psutil

    from harness.model.errors import ModelError
    from harness.measure.procfs import ProcParseError
    return (LaunchError, GuestError, HostError, TimeoutError, subprocess.SubprocessError, OSError, EOFError,
            paramiko.SSHException, psutil.Error, ProcParseError, ModelError, ValueError, LookupError, RuntimeError)


def classify(exc: BaseException) -> tuple[int, str]:
    """Pure: an exception that ended a command -> (exit code, the message for stderr).

    Bad input is one line. Anything else that is not a verdict is a failure (3),
    named by what failed; an exception of a kind the suite does not expect is
    still a failure, not a verdict, and says it may be a bug."""
    if isinstance(exc, Interrupted):
        return EXIT_INTERRUPTED, f"interrupted ({exc})"
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, UserError):
        return EXIT_BAD_INPUT, "error: " + " ".join(str(exc).split("\n")[:1])
    if isinstance(exc, (LaunchError, GuestError)):
        return EXIT_FAILURE, f"failed: {exc}"
    kind = exc.__class__.__name__
    if isinstance(exc, subprocess.TimeoutExpired):
        return EXIT_FAILURE, f"failed: host command timed out after {exc.timeout:.3g} s: {_cmd(exc.cmd)}"
    if isinstance(exc, subprocess.CalledProcessError):
        err = (exc.stderr or b"")
        err = (err.decode(errors="replace") if isinstance(err, bytes) else err).strip().splitlines()
        return EXIT_FAILURE, (f"failed: host command exited {exc.returncode}: {_cmd(exc.cmd)}"
                              + (f": {err[-1]}" if err else ""))
    if isinstance(exc, _failure_types()):
        return EXIT_FAILURE, f"failed: {kind}: {exc}"
    return EXIT_FAILURE, f"failed: unexpected {kind}: {exc} (a bug in balloon-e2e? traceback in the run's cli.log)"


def _cmd(cmd) -> str:
    return cmd if isinstance(cmd, str) else " ".join(map(str, cmd))
