"""Reference model of free page reporting: what the host should get back, and when.

Pure Python, no I/O. Kernel rules from Linux 6.1 / 6.12 mm/page_alloc.c and
mm/page_reporting.c, host rules from QEMU hw/virtio/virtio-balloon.c
(7.2 / 10.0); each rule names its source function where it is coded.

Main entry point: predict a release from before it (release.py)
----------------------------------------------------------------
    from harness.model.release import PreRelease, predict_release, Host, Activity
    pred, released, layout = predict_release(pre, host=Host(backend="anon", metric="rss"),
                                             noise_mib=0.1, activity=Activity(...))
    pred.expected_mib, pred.lo_mib, pred.hi_mib   # MiB the QEMU process RSS should drop by
    pred.curve                                    # ((seconds after the release, cumulative MiB), ...)
    pred.terms                                    # named reasons for [lo, hi], each with MiB
    layout                                        # the free blocks predicted right after the release

`pre` (PreRelease, with ZoneState / Pcp / Run / FreeBlock) is the model's own input type:
the guest's free blocks with their flags, the host's residency per guest page, the per-cpu
lists per zone and CPU, and the pages the release frees in the order it frees them, all
read before the release. harness/verdict/prediction.py builds it from a phase's `pre` record and
judges the measurement (total, curve, time to 90%, layout, guest free memory).

Lower layers, usable on their own:
  Machine / Zone (buddy.py)   blocks (pfn, order) per order and migratetype list
  run_pass, Reporter (reporting.py)   one page_reporting_process pass, the state machine
  HostConfig, ResidentMap, discard (discard.py)   QEMU's handling of a report
  Prediction, Term (predict.py)   what a prediction is
A timed allocation trace over these layers, and made-up guests for it, are test tooling
(tests/sim), not on the verdict path.
"""
from harness.model.buddy import CMA, HIGHATOMIC, ISOLATE, MOVABLE, RECLAIMABLE, UNMOVABLE, Machine, Zone
from harness.model.discard import Discard, HostConfig, ResidentMap, discard
from harness.model.errors import ModelError
from harness.model.kernel import KernelSpec, effective_reporting_order, kernel_spec, kernel_version
from harness.model.predict import Prediction, Term, verdict
from harness.model.reporting import Pass, Report, Reporter, ReportingParams, run_pass, run_until_idle

__all__ = [
    "CMA", "HIGHATOMIC", "ISOLATE", "MOVABLE", "RECLAIMABLE", "UNMOVABLE", "Machine", "Zone",
    "Discard", "HostConfig", "ResidentMap", "discard", "ModelError",
    "KernelSpec", "effective_reporting_order", "kernel_spec", "kernel_version",
    "Prediction", "Term", "verdict",
    "Pass", "Report", "Reporter", "ReportingParams", "run_pass", "run_until_idle",
]
