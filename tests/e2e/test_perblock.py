"""Per-block truth on a real guest: every block the guest marks reported is absent on the host.

The touch-free steps (2 GiB guest, `e2emem` touches then frees 1 GiB) with a per-block
capture (guest kpageflags scan, then QEMU's pagemap) right after the free and again once
RSS settled; harness/measure/perblock.py holds the rules and their kernel sources.

Absence alone proves little (pages the guest never touched are absent too), so the proof
is the transition: pages the host held right after the free, in blocks the guest reports
later, are gone once settled; and the controls: with reporting off no block is ever
marked reported, and with page_poison=1 the guest marks blocks reported while QEMU keeps
them (hw/virtio/virtio-balloon.c virtio_balloon_handle_report skips the discard when the
guest's poison value is not 0), which the invariant must catch.

Bounds, measured here (Debian 6.1.0-50 and 6.12.117, QEMU 7.2.22, TCG, 2 GiB; see
tests/data/perblock/):
- Of the 262144 freed pages, 256512-259072 sat in blocks of order >= 9 held right after the
  free and reported later; the rest went to smaller blocks, per-cpu lists and page tables.
  SLACK_PAGES (8192, 32 MiB) allows that.
"""
from dataclasses import dataclass

import pytest

from harness.build import image
from harness.measure import guestfacts, perblock, procfs
from harness.measure.phase import main_phase
from harness.scenarios import touch_free
from harness.verdict.prediction import NOISE_MIB

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


# 6.1 by default; 6.12 with --matrix full (its tail-BUDDY marking is also exercised by
# every per-block check of the default 6.12 x QEMU 10.0 run in tests/e2e/test_matrix.py).
@pytest.fixture(params=[pytest.param(k, marks=() if k == "6.1" else pytest.mark.matrix) for k in image.KERNELS],
                ids=lambda k: f"linux-{k}")
def kernel(request):
    """Every guest kernel the image knows: 6.1 and 6.12 both mark every page of a free
    block BUDDY (the inferred blocks agree with buddyinfo only if they do)."""
    return request.param

FREED_MIB = 256  # one pass: the invariants are per block, not per pass (issue 11: right-sized)
FREED_PAGES = FREED_MIB * 256
SLACK_PAGES = 8192


@dataclass
class Run:
    after_free: perblock.Capture
    settled: perblock.Capture
    features: str
    order: int
    rss_peak_mib: float
    rss_after_mib: float
    seconds_to_first_capture: float


def touch_free_captures(g, reporting: bool) -> Run:
    """The default scenario (harness/scenarios): it waits for the boot-time passes, settles,
    touches and frees, and keeps a capture right after the free and one once RSS settled."""
    r = touch_free.run(g, mib=FREED_MIB)
    m = main_phase(r)
    ph = r["phases"][-1]
    caps = {k: perblock.Capture.from_json(ph["captures"][k]) for k in ("freed", "settled")}
    return Run(caps["freed"], caps["settled"], guestfacts.balloon_features(g), m["reportable_order"],
               m["rss_peak_mib"], m["rss_after_mib"], ph["first_capture_s"])


def _record(record_property, r: Run, reporting: bool) -> dict:
    s = perblock.summary(r.after_free, r.settled, reporting)
    record_property("per_block", s)
    record_property("rss_drop_mib", round(r.rss_peak_mib - r.rss_after_mib, 1))
    return s


@pytest.mark.matrix  # every scenario test checks these invariants too (scenarios/common.py)
def test_reported_blocks_are_absent_on_the_host(guest_factory, record_property, kernel):
    g = guest_factory(reporting=True, kernel=kernel)
    r = touch_free_captures(g, reporting=True)
    s = _record(record_property, r, True)
    assert procfs.feature_bit(r.features, procfs.VIRTIO_BALLOON_F_REPORTING)
    assert r.seconds_to_first_capture < 2.0, "first capture not within the kernel's 2 s reporting delay"
    # the guest's view agrees with its own buddyinfo where it matters
    for cap in (r.after_free, r.settled):
        assert perblock.buddyinfo_mismatches(cap.blocks, cap.scan, r.order) == []
    # before: right after the free, the freed memory is free, unreported and held
    assert perblock.join(r.after_free)["free_unreported"]["held"] >= FREED_PAGES - SLACK_PAGES
    # (a) and (c): no reported block held, no page held after the free left held once reported
    perblock.check(r.after_free, r.settled, reporting=True)
    # the transition: those pages were reported and released
    assert s["transition"]["released"] >= FREED_PAGES - SLACK_PAGES
    assert s["settled"]["pages"]["reported"]["pages"] >= FREED_PAGES


@pytest.mark.matrix  # every scenario test checks these invariants too (scenarios/common.py)
def test_reporting_off_marks_no_block_reported(guest_factory, record_property, kernel):
    g = guest_factory(reporting=False, kernel=kernel)
    r = touch_free_captures(g, reporting=False)
    s = _record(record_property, r, False)
    assert not procfs.feature_bit(r.features, procfs.VIRTIO_BALLOON_F_REPORTING)
    perblock.check(r.after_free, r.settled, reporting=False)  # (b)
    # nothing given back: the freed memory is still held, in unreported blocks
    assert s["settled"]["pages"]["free_unreported"]["held"] >= FREED_PAGES - SLACK_PAGES


def test_page_poison_reports_without_discard_and_the_invariant_catches_it(guest_factory, record_property, kernel):
    """The broken setup: the guest poisons free pages (page_poison=1, CONFIG_PAGE_POISONING=y on
    Debian 6.1) and the balloon keeps its default page-poison=on, so VIRTIO_BALLOON_F_PAGE_POISON
    is negotiated with poison_val 0xaaaaaaaa: the guest reports and marks blocks, QEMU acks
    without discarding (virtio_balloon_handle_report)."""
    # 1 GiB: it boots (poisoned free pages are not zero: harness/vm/saved_guest.py), and a boot's
    # cost is its boot-time passes, ~8 s a GiB
    g = guest_factory(reporting=True, kernel=kernel, kernel_args=("page_poison=1",), memory_mib=1024)
    r = touch_free_captures(g, reporting=True)
    s = _record(record_property, r, True)
    assert procfs.feature_bit(r.features, procfs.VIRTIO_BALLOON_F_REPORTING)
    assert procfs.feature_bit(r.features, procfs.VIRTIO_BALLOON_F_PAGE_POISON)
    reported = [b for b in r.settled.blocks if b.reported]
    assert sum(b.pages for b in reported) >= FREED_PAGES, "the guest should still mark blocks reported"
    with pytest.raises(perblock.InvariantViolation, match=r"reported_held: block pfn 0x[0-9a-f]+ order \d+ in \w+ "
                                                          r"\(reported\): host holds (\d+)/\1 pages"):
        perblock.check(r.after_free, r.settled, reporting=True)
    # every reported block is held in full, and confirmed by the recheck (no race)
    held, raced = perblock.reported_held(r.settled)
    assert raced == 0 and r.settled.recheck is not None
    assert len(held) == len(reported) and all(v.held == v.block.pages for v in held)
    assert s["transition"]["released"] == 0
    # What RSS alone sees: nothing came back (the poisoning made all of guest RAM resident at
    # boot), exactly as with reporting off; only the per-block view says the guest did report.
    assert abs(r.rss_peak_mib - r.rss_after_mib) <= NOISE_MIB
