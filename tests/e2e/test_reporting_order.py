"""page_reporting_order: how each kernel takes it, and the reclaim at orders other than 9.

mm/page_reporting.c: 6.1 sets page_reporting_order = pageblock_order when the
driver registers, whatever the command line said; since 6.2 a value set on the
command line is kept. The harness therefore writes sysfs after the driver loads
(guest_images/rootfs/etc/rcS), which both kernels honour.
"""
import pytest

from harness.measure import guestfacts
from harness.measure.phase import main_phase
from harness.scenarios import touch_free
from harness.verdict.prediction import curve_mismatches, predict
from tests.e2e.explain import explain

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CMDLINE = "page_reporting.page_reporting_order=10"


@pytest.mark.parametrize("kernel,effective", [("6.1", 9), ("6.12", 10)], ids=["6.1-overwrites", "6.12-keeps"])
def test_command_line_order(guest_factory, kernel, effective):
    g = guest_factory(kernel=kernel, memory_mib=512, smp=1, kernel_args=(CMDLINE,))
    assert guestfacts.reporting_order(g) == effective


# Below order 9 a report discards half of a 2 MiB host huge page. Seen once with
# host THP: 3 reported order-8 blocks fully held again by the host at the settled
# capture, consistent with khugepaged collapsing the half-empty range back into a
# huge page (max_ptes_none 511 here; not verified further). The order-8 case
# therefore runs with host THP off for QEMU (PR_SET_THP_DISABLE).
@pytest.mark.parametrize("order,host_thp", [pytest.param(10, None, marks=pytest.mark.matrix), (8, False)],
                         ids=["order10", "order8-host-thp-off"])
def test_reclaim_at_other_orders_matches_the_model(guest_factory, order, host_thp, report):
    g = guest_factory(reporting_order=order, host_thp=host_thp)
    assert guestfacts.reporting_order(g) == order
    r = touch_free.run(g, mib=256)  # 64 order-10 or 256 order-8 blocks: one or two passes
    predict(r)
    m = main_phase(r)
    report(r)
    assert m["reportable_order"] == order
    assert r["verdict"] == "within", explain(r)
    assert curve_mismatches(m) == []
    assert m["per_block"]["violations"]["count"] == 0, m["per_block"]["violations"]["first"]
