"""The scenarios, one line each on what it proves (`balloon-e2e list` prints them).

A scenario is a module here with a run(guest, ...) -> result dict built on
common.py's phase engine; harness/cli.py maps its options to that call.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    proves: str


SCENARIOS = (
    Scenario("touch-free", "memory touched then freed in the guest comes back to the host, as much and as fast "
                           "as the model predicts"),
    Scenario("fragment", "free memory only in blocks below the reporting order is not reported; once it "
                         "merges, it is"),
    Scenario("reuse", "reported memory touched again faults back in on the host, and is reported again when freed"),
    Scenario("integrity", "data kept allocated survives 10 reporting cycles bit for bit; reported pages reach "
                          "the program zeroed"),
    Scenario("page-cache", "page cache dropped with drop_caches is reported like any other free memory"),
    Scenario("inflate", "the classic balloon: inflate to a target, MemTotal down by exactly the balloon, the "
                        "host's RSS drop as the model predicts from the pages the guest hands over; deflate"),
    Scenario("deflate-on-oom", "memory pressure past the inflated balloon: with deflate-on-oom the guest takes "
                               "pages back 1 MiB per OOM call; without it the OOM killer acts"),
    Scenario("stats", "guest-stats through QMP against /proc/meminfo and /proc/vmstat, each by its driver formula"),
    Scenario("hint-migrate", "free page hinting: a live migration over a unix socket sends as many normal and "
                             "zero pages as the model predicts, with and without hinting; the data survives"),
    Scenario("workload", "your own command (--workload CMD): its exit, or --release CMD, gives back what the "
                         "model predicts"),
)


def names() -> tuple[str, ...]:
    return tuple(s.name for s in SCENARIOS)
