from harness.verdict.prediction import curve_mismatches, plateaus

CURVE = [[0.0, 0.0], [2.0, 120.0], [2.005, 248.0], [4.01, 376.0], [4.015, 504.0]]


def test_plateaus_skip_the_passes_themselves():
    assert plateaus(CURVE, 0.5) == [(0.5, 1.5, 0.0), (2.505, 3.51, 248.0), (4.515, 5.515, 504.0)]


def _phase(samples):
    return {"predicted_mib": 504.0, "predicted_lo_mib": 494.0, "predicted_hi_mib": 514.0,
            "predicted_curve": CURVE, "rss_peak_mib": 1300.0, "samples": samples}


def test_a_measured_curve_on_the_steps_matches():
    samples = [[t / 10, 1300.0 - (0 if t < 21 else 248 if t < 41 else 504), 0] for t in range(0, 60)]
    assert curve_mismatches(_phase(samples)) == []


def test_a_late_or_short_step_is_caught():
    # the second pass never came: the drop stays at 248 where 504 was predicted
    samples = [[t / 10, 1300.0 - (0 if t < 21 else 248), 0] for t in range(0, 60)]
    bad = curve_mismatches(_phase(samples))
    assert bad and "predicted 504.0" in bad[0]


def _vmstat(alloc: int, free: int) -> str:
    return f"pgalloc_dma32 {alloc}\npgalloc_normal 0\npgfree {free}\n"


def test_the_idle_rates_leave_out_the_vmstat_reads_own_cost():
    from harness.verdict.prediction import idle_rates
    keys = ["pgalloc_dma32", "pgalloc_normal"]
    # measured here: ~100 pages per read over SSH, and ~100 over a 1 s window: the guest idle
    act = {"vmstat": [_vmstat(1000, 2000), _vmstat(1104, 2110)], "seconds": 1.0,
           "read_cost": [_vmstat(899, 1895), _vmstat(1000, 2000)]}
    assert idle_rates(act, keys) == (3.0, 5.0)
    # a guest that really allocates shows it
    busy = {**act, "vmstat": [_vmstat(1000, 2000), _vmstat(1601, 2105)]}
    assert idle_rates(busy, keys) == (500.0, 0.0)
    # the planted error: the read counted as idle activity (a record without read_cost)
    old = {k: v for k, v in act.items() if k != "read_cost"}
    assert idle_rates(old, keys) == (104.0, 110.0)


def test_a_captures_cost_leaves_out_the_read_it_was_measured_with():
    from harness.verdict.prediction import capture_cost
    keys = ["pgalloc_dma32", "pgalloc_normal"]
    act = {"read_cost": [_vmstat(0, 0), _vmstat(100, 100)]}
    assert capture_cost([_vmstat(1000, 0), _vmstat(1400, 0)], act, keys) == 300
    assert capture_cost([_vmstat(1000, 0), _vmstat(1400, 0)], {}, keys) == 400  # older records: the whole delta
