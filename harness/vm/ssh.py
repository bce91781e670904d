"""SSH into the guest with paramiko: wait until it answers, run commands, drive a process."""
from __future__ import annotations

import logging
import shlex
import socket
import time
from dataclasses import dataclass

import paramiko

from harness.errors import GuestError

# While the guest boots, each refused attempt makes paramiko's transport thread
# log a traceback; the wait loop reports the last error itself.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)
log = logging.getLogger(__name__)


class _AcceptFreshHostKey(paramiko.MissingHostKeyPolicy):
    # dropbear makes a new host key at each boot (-R) and the port is ours on
    # 127.0.0.1, so there is no earlier key to compare with; nothing is stored.
    def missing_host_key(self, client, hostname, key):
        return


@dataclass
class Result:
    cmd: str
    status: int
    stdout: str
    stderr: str


class Session:
    def __init__(self, port: int, key: paramiko.PKey):
        self.port, self.key = port, key
        self.client: paramiko.SSHClient | None = None

    def connect(self, timeout: float = 5.0) -> None:
        c = paramiko.SSHClient()
        c.set_missing_host_key_policy(_AcceptFreshHostKey())
        c.connect("127.0.0.1", port=self.port, username="root", pkey=self.key, timeout=timeout,
                  banner_timeout=timeout, auth_timeout=timeout, look_for_keys=False, allow_agent=False)
        self.client = c

    def wait(self, deadline: float, alive=lambda: True) -> float:
        """Retry until a command runs; returns seconds waited. Raises TimeoutError."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() < deadline:
            if not alive():
                raise GuestError(f"QEMU exited while waiting for SSH (last error: {last})")
            try:
                self.connect(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                self.run("true", timeout=10)
                return time.monotonic() - t0
            except (paramiko.SSHException, OSError, EOFError, GuestError) as e:
                last = e
                self.close()
                time.sleep(0.2)  # poll interval of a retry loop, not a wait for an event
        raise TimeoutError(f"guest SSH not ready (last error: {last})")

    def run(self, cmd: str, check: bool = True, timeout: float = 60) -> Result:
        """Run a command (a string for the guest's /bin/sh); raise with stderr on failure."""
        if self.client is None:
            raise GuestError("SSH session not connected")
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            # The connection dropped between commands (nothing of this one was sent): once more.
            log.warning("SSH connection to the guest dropped; reconnecting")
            self.close()
            try:
                self.connect()
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise GuestError(f"guest command {cmd!r}: SSH connection lost and not regained: {e}") from e
        try:
            _, out, err = self.client.exec_command(cmd, timeout=timeout)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
            status = out.channel.recv_exit_status()
        except (socket.timeout, paramiko.SSHException, OSError) as e:
            raise GuestError(f"guest command {cmd!r} failed: {e}") from e
        r = Result(cmd, status, stdout, stderr)
        if check and status != 0:
            raise GuestError(f"guest command {cmd!r} exited {status}: {stderr.strip()[-500:]}")
        return r

    def start(self, cmd: str) -> "Process":
        if self.client is None:
            raise GuestError("SSH session not connected")
        try:
            chan = self.client.get_transport().open_session()
            chan.exec_command(cmd)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise GuestError(f"guest command {cmd!r} could not start: {e}") from e
        return Process(cmd, chan)

    def put(self, path: str, data: bytes, mode: int = 0o755, timeout: float = 120) -> None:
        """Write a file in the guest (dropbear has no SFTP): the bytes go to `cat` on stdin."""
        if self.client is None:
            raise GuestError("SSH session not connected")
        q = shlex.quote(path)
        cmd = f"mkdir -p \"$(dirname {q})\" && cat > {q} && chmod {mode:o} {q}"
        try:
            chan = self.client.get_transport().open_session()
            chan.settimeout(timeout)
            chan.exec_command(cmd)
            chan.sendall(data)
            chan.shutdown_write()
            status = chan.recv_exit_status()
            err = chan.makefile_stderr("r").read().decode(errors="replace") if status else ""
            chan.close()
        except (socket.timeout, paramiko.SSHException, OSError, EOFError) as e:
            raise GuestError(f"copying {len(data)} bytes to the guest's {path} failed: {e}") from e
        if status:
            raise GuestError(f"copying to the guest's {path} failed (exit {status}): {err.strip()[-300:]}")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


class Process:
    """A guest process spoken to line by line (the e2emem protocol)."""

    def __init__(self, cmd: str, chan: paramiko.Channel):
        self.cmd, self.chan = cmd, chan
        self.file = chan.makefile("r")

    def send(self, line: str) -> None:
        try:
            self.chan.sendall((line + "\n").encode())
        except (socket.timeout, OSError, paramiko.SSHException) as e:
            raise GuestError(f"{self.cmd}: could not send {line!r}: {e}") from e

    def read_line(self, timeout: float) -> str:
        """The next line the process prints ('' at EOF); TimeoutError after `timeout` seconds."""
        self.chan.settimeout(max(0.01, timeout))
        try:
            return self.file.readline().strip()
        except socket.timeout:
            raise TimeoutError(f"{self.cmd}: no output within {timeout:.0f} s") from None
        except (OSError, paramiko.SSHException) as e:
            raise GuestError(f"{self.cmd}: reading its output failed: {e.__class__.__name__}: {e}") from e

    def ask(self, line: str, timeout: float = 120) -> str:
        """Send one command line, return the reply line ('ok ...'); raise on 'err' or EOF."""
        self.send(line)
        return self.reply(line, timeout)

    def reply(self, line: str, timeout: float = 120) -> str:
        """The reply line ('ok ...') to `line`, already sent (the caller did other work
        meanwhile); raise on 'err' or EOF."""
        self.chan.settimeout(timeout)
        try:
            reply = self.file.readline().strip()
        except (socket.timeout, OSError, paramiko.SSHException) as e:
            raise GuestError(f"{self.cmd}: no answer to {line!r}: {e}") from e
        if not reply.startswith("ok"):
            raise GuestError(f"{self.cmd}: {line!r} -> {reply or 'EOF'}")
        return reply

    def close(self) -> None:
        try:
            self.chan.sendall(b"quit\n")
            self.chan.shutdown_write()
            self.chan.recv_exit_status()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        self.chan.close()
