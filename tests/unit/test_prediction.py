from harness.prediction import curve_mismatches, plateaus

CURVE = [[0.0, 0.0], [2.0, 120.0], [2.005, 248.0], [4.01, 376.0], [4.015, 504.0]]


def test_plateaus_skip_the_passes_themselves():
    assert plateaus(CURVE, 0.5) == [(0.5, 1.5, 0.0), (2.505, 3.51, 248.0), (4.515, 5.515, 504.0)]


def _result(samples):
    return {"predicted_mib": 504.0, "predicted_lo_mib": 494.0, "predicted_hi_mib": 514.0,
            "predicted_curve": CURVE, "rss_peak_mib": 1300.0, "samples": samples}


def test_a_measured_curve_on_the_steps_matches():
    samples = [[t / 10, 1300.0 - (0 if t < 21 else 248 if t < 41 else 504), 0] for t in range(0, 60)]
    assert curve_mismatches(_result(samples)) == []


def test_a_late_or_short_step_is_caught():
    # the second pass never came: the drop stays at 248 where 504 was predicted
    samples = [[t / 10, 1300.0 - (0 if t < 21 else 248), 0] for t in range(0, 60)]
    bad = curve_mismatches(_result(samples))
    assert bad and "predicted 504.0" in bad[0]
