"""Shared by the fault tests: has a process ended?"""
import time

import psutil


def gone(pid: int, timeout: float = 30) -> bool:
    """True once `pid` has exited (a zombie counts: its parent reaps it); polls until `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)  # poll interval of a condition with a deadline
    return False
