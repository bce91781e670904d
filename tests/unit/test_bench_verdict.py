"""The peers' waits of bench/bench_verdict.py, on a synthetic step curve."""
import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("bench_verdict", Path(__file__).parents[2] / "bench" / "bench_verdict.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

# 1 GiB back in four 2 s steps from 1224 to 200 MiB, sampled every 0.1 s
SAMPLES = [[round(i / 10, 1), 1224 - 256 * min(4, int((i / 10) // 2)), 0] for i in range(150)]


def test_tp_qemu_stops_at_the_first_5_s_poll_within_10_percent_of_before():
    assert bench.tp_qemu(SAMPLES, 200, 1224, 200) == 10.0  # at 5 s RSS is 712


def test_firecracker_stops_on_the_first_flat_pair_even_mid_reclaim():
    assert bench.firecracker(SAMPLES, 200, 1224, 200) == 3.0  # 2 s and 3 s both read 968


def test_a_peer_verdict_replaces_our_release_to_verdict_part():
    r = {"phases": [{"samples": SAMPLES, "rss_peak_mib": 1224, "rss_after_mib": 200}], "rss_before_mib": 200,
         "timings": {"verdict_s": 20.0, "release_at_s": 9.0}}
    p = bench.peer_waits(r)
    assert p["tp-libvirt"]["verdict_s"] == 9.0 + 120.0
    assert p["firecracker"]["drop_seen_fraction"] == 0.25


def test_rcs_uptime_is_read_from_the_console():
    assert bench.rcs_uptime_s("[    2.02] Free page reporting enabled\ne2e: rcS done 2.09s\n") == 2.09
    assert bench.rcs_uptime_s("no init line") is None


def test_the_suites_failures_are_named():
    xml = ('<testsuites><testsuite><testcase classname="tests.e2e.a" name="ok"/>'
           '<testcase classname="tests.e2e.a" name="bad"><failure message="x"/></testcase>'
           '<testcase classname="tests.unit.b" name="broke"><error message="y"/></testcase>'
           '<testcase classname="tests.unit.b" name="skipped"><skipped/></testcase></testsuite></testsuites>')
    assert bench._failed_ids(xml) == ["tests.e2e.a::bad", "tests.unit.b::broke"]
