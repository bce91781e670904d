"""touch-free across guest shapes: two NUMA nodes.

With two nodes QEMU gets two memory backends (one per node) and half the vCPUs
each; the guest sees two nodes (/proc/buddyinfo 'Node 0' and 'Node 1') and
reports free blocks zone by zone on both (mm/page_reporting.c walks every
zone). The workload's 1 GiB does not fit in one node of a 2 GiB guest, so the
free makes blocks reportable on both nodes; the model predicts the process RSS
drop from the guest's snapshots, which carry both nodes' zones.

The guest RAM figure must cover both backends (Guest.ram_hvas()): the scenario
waits for it to settle, and node 0's alone goes flat while node 1 is still
being reported. The verdict is on the QEMU process RSS, which covers both.
"""
import pytest

from harness.measure import procfs
from harness.measure.phase import main_phase
from harness.scenarios import touch_free
from harness.scenarios.common import RSS_STOP_S
from harness.verdict.prediction import curve_mismatches, predict
from tests.e2e.explain import explain

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

FREED_MIB = 1024
REUSE_SLACK_MIB = 24.0  # tests/e2e/test_touch_free.py
CURVE_JITTER_S = 0.5

SHAPES = [
    pytest.param({"numa_nodes": 2}, id="numa-2"),
    pytest.param({"numa_nodes": 2, "kernel": "6.12"}, id="numa-2-guest-6.12", marks=pytest.mark.matrix),
    pytest.param({"numa_nodes": 2, "qemu": "10.0"}, id="numa-2-qemu-10.0", marks=pytest.mark.matrix),
    pytest.param({"numa_nodes": 2, "backend": "memfd"}, id="numa-2-memfd", marks=pytest.mark.matrix),
]


def _per_node_reportable(r) -> dict[int, float]:
    m = main_phase(r)
    snaps = r["phases"][-1]["snapshots"]  # kept in the phase, not copied to the top
    held, freed = (procfs.parse_buddyinfo(snaps[k]["buddyinfo"]) for k in ("held", "freed"))
    o = m["reportable_order"]
    return {n: round(procfs.free_mib_at_or_above([z for z in freed if z.node == n], o)
                     - procfs.free_mib_at_or_above([z for z in held if z.node == n], o), 1)
            for n in sorted({z.node for z in freed})}


@pytest.mark.parametrize("dims", SHAPES)
def test_two_nodes_report_and_give_back_what_the_model_predicts(request, guest_factory, record_property, dims, report):
    g = guest_factory(**dims)
    nodes = {z.node for z in procfs.parse_buddyinfo(g.run("cat /proc/buddyinfo").stdout)}
    assert nodes == {0, 1}, f"the guest sees nodes {sorted(nodes)}"
    cpus = [g.run(f"cat /sys/devices/system/node/node{n}/cpulist").stdout.strip() for n in (0, 1)]
    assert cpus == ["0", "1"], f"vCPUs per node: {cpus}"

    r = touch_free.run(g, mib=FREED_MIB)
    predict(r)
    m = main_phase(r)
    per_node = _per_node_reportable(r)
    line = (f"{request.node.name}: QEMU {r['qemu']}, guest {r['kernel']}, drop {m['drop_mib']} MiB, predicted "
            f"{m['predicted_mib']} [{m['predicted_lo_mib']}, {m['predicted_hi_mib']}] {r['verdict']}, "
            f"t90 {m['seconds_to_90pct']} s (predicted {m['predicted_seconds_to_90pct']} s), "
            f"reportable per node {per_node}")
    record_property("summary", line)
    report(r)
    print("\n" + line)
    assert r["reporting_negotiated"]
    assert m["rss_peak_mib"] - r["rss_before_mib"] >= FREED_MIB - REUSE_SLACK_MIB, "the workload did not hold its memory"
    assert all(v > 0 for v in per_node.values()), f"the free should make blocks reportable on both nodes: {per_node}"
    assert m["predicted_mib"] >= FREED_MIB / 2
    last_pass = max(t for t, _ in m["predicted_curve"])
    # the phase ends RSS_STOP_S of still samples after the last pass's fall, which comes after the model's pass
    assert m["samples"][-1][0] >= last_pass + RSS_STOP_S, (
        f"sampling stopped {m['samples'][-1][0]} s after the free, before the model's last pass at {last_pass} s "
        f"and {RSS_STOP_S} s of still RSS: the settle condition must watch every node's RAM backend "
        "(hostmem.Sampler(pid, guest.ram_hvas()))")
    assert r["verdict"] == "within", explain(r)
    assert curve_mismatches(m, CURVE_JITTER_S) == [], "the measured curve left the predicted steps"
