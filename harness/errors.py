"""Errors the suite raises on purpose. The CLI prints a UserError as one line."""


class UserError(Exception):
    """Bad input or an unusable host: the message alone says what to do."""


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
