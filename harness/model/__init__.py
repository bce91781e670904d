"""Reference model of free page reporting: what the host should get back, and when.

Pure Python, no I/O. Kernel rules from Linux 6.1 / 6.12 mm/page_alloc.c and
mm/page_reporting.c, host rules from QEMU hw/virtio/virtio-balloon.c
(7.2 / 10.0); each rule names its source function where it is coded.

Main entry point (the touch-free scenario)
------------------------------------------
    from harness.snapshot import snapshot_from_texts
    from harness.model import predict_touch_free, verdict

    before = snapshot_from_texts(zoneinfo=..., pagetypeinfo=..., buddyinfo=..., vmstat=...,
                                 kernel="6.1.0-28-amd64", reporting_order=9)  # workload holds its memory
    after = snapshot_from_texts(...)                                          # right after the free
    p = predict_touch_free(before, after, kernel=..., order=9, freed_mib=1024, noise_mib=4.0)
    p.expected_mib, p.lo_mib, p.hi_mib    # MiB the QEMU process RSS should drop by
    p.curve                               # ((seconds after the free, cumulative MiB), ...)
    p.terms                               # named reasons for [lo, hi], each with MiB
    p.why                                 # per pass: budget per list, reports, why it stopped
    p.to_json()                           # plain dicts
    verdict(measured_mib, p)              # "within" / "outside"

Inputs of predict_touch_free:
  before, after     harness.snapshot.Snapshot (zoneinfo, pagetypeinfo, buddyinfo, vmstat).
                    Blocks free in both are taken as already reported (set
                    before_reported=False if the guest had not settled).
  kernel, order     guest release and the effective reporting order (read
                    page_reporting_order from sysfs after the driver loaded;
                    effective_reporting_order() says what a configuration gives).
  freed_mib         what the workload freed.
  resident          ResidentFraction(new=None, settled=0.0): host residency.
                    Default: the freed memory was resident, older free memory
                    was not (reported at boot or never touched).
  blocks, resident  the exact path: the guest's real free blocks after the free
                    ((pfn, order, reported) or harness.perblock.Block, from
                    /proc/kpageflags) with resident=ResidentMap.from_bytes(held)
                    (QEMU's pagemap per guest pfn). On the 6.1 per-block capture
                    this predicts the measured host release to the MiB.
  backend, host_page_size, discard_inhibited, poison_val: QEMU side.
  params            ReportingParams: capacity, delay, budget divisor, gates,
                    order override, report latency (what-ifs).
  noise_mib         measured RSS noise; activity_mib: guest activity in the window.
  window_s          None: predict the final drop; else the drop by window_s.
  reporter          ReporterState at the free (idle, or work pending at next_run_s).
  metric            "rss" (QEMU process) or "mapping" (guest RAM mapping; use it
                    for hugetlb, whose pages are outside Rss).

Lower layers, usable on their own:
  Machine / Zone (buddy.py)   blocks (pfn, order) per order and migratetype list
  run_pass, Reporter (reporting.py)   one page_reporting_process pass, the state machine
  HostConfig, ResidentMap, discard (discard.py)   QEMU's handling of a report
  Simulation, Touch, Free, Fragment, Register (trace.py)   a timed allocation trace
  build_machine (layout.py)   a model guest from a Snapshot
  fresh_machine, snapshot_of (synth.py)   made-up guests for tests and what-ifs
"""
from .buddy import CMA, HIGHATOMIC, ISOLATE, MOVABLE, RECLAIMABLE, UNMOVABLE, Machine, Zone
from .discard import Discard, HostConfig, ResidentMap, discard
from .errors import ModelError
from .kernel import KernelSpec, effective_reporting_order, kernel_spec, kernel_version
from .layout import build_machine
from .predict import (Prediction, ReporterState, ResidentFraction, Term, predict_touch_free,
                      verdict)
from .reporting import Pass, Report, Reporter, ReportingParams, run_pass, run_until_idle
from .synth import fresh_machine, snapshot_of
from .trace import Fragment, Free, Register, Simulation, SimResult, Touch, simulate, touch

__all__ = [
    "CMA", "HIGHATOMIC", "ISOLATE", "MOVABLE", "RECLAIMABLE", "UNMOVABLE", "Machine", "Zone",
    "Discard", "HostConfig", "ResidentMap", "discard", "ModelError",
    "KernelSpec", "effective_reporting_order", "kernel_spec", "kernel_version", "build_machine",
    "Prediction", "ReporterState", "ResidentFraction", "Term", "predict_touch_free", "verdict",
    "Pass", "Report", "Reporter", "ReportingParams", "run_pass", "run_until_idle",
    "fresh_machine", "snapshot_of",
    "Fragment", "Free", "Register", "Simulation", "SimResult", "Touch", "simulate", "touch",
]
