"""The reference allocator on stored real runs: predicted from before the release only, held to
the measurement, and every planted model error caught (the verdict can fail both ways).

Data: tests/data/release/*.json are `balloon-e2e run` results (README "Measured here"): Debian
6.1.0-57 under QEMU 7.2.22, TCG, 2 GiB, 2 vCPUs, 1 GiB touched and freed (touch_free_6.1_on,
reporting on; touch_free_6.1_off, reporting off) and the fragment scenario (fragment_6.1_on).
"""
import copy
import dataclasses
import json
from pathlib import Path

import pytest

from harness import cli

from harness.verdict import prediction
from harness.model import ModelError, ReportingParams
from harness.model import release as R
from harness.model import reporting
from harness.measure.perblock import Capture, Scan
from harness.measure.prerelease import PreRecord

DATA = Path(__file__).parent.parent / "data" / "release"
_RUN_RELEASE = R.run_release  # the unplanted one, for _without_runs


def load(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


def judged(result: dict, params: ReportingParams | None = None) -> dict:
    r = copy.deepcopy(result)
    prediction.predict(r, params)
    return r


def _without_runs(monkeypatch, *names: str) -> None:
    """Plant: the model's run_release ignoring those keyword arguments (the term's runs that
    use them become the model's own run)."""
    monkeypatch.setattr(R, "run_release", lambda p, **kw: _RUN_RELEASE(p, **{k: v for k, v in kw.items()
                                                                            if k not in names}))


def _thp_pages_twice(monkeypatch) -> None:
    """Plant: the model's lists as they were set up before 2026-12-07, a THP from before the
    release counted on the THP list and again among the order-0 list's pages of unknown
    position (512 pages more on the lists than their count)."""
    init = R.PcpList.__init__

    def twice(self, *a, **k):
        init(self, *a, **k)
        kept = sum(1 for h in self.thp if h in self.before)   # (several -1 heads are one in the set)
        if kept:
            self.order0.append([-1, kept << self.zone.pb_order, False])
    monkeypatch.setattr(R.PcpList, "__init__", twice)


# the README scenario stored three times: before the workload settled its CPU (the wide
# pcp_residue term), after (a settled release, its interval from the model's own runs), and
# with the capture's walk of the per-cpu lists (e2epfn 4)
@pytest.fixture(scope="module", params=["touch_free_6.1_on", "touch_free_settled_6.1_on", "touch_free_walked_6.1_on"])
def on(request):
    return load(request.param)


def test_kernel_constants_read_within_on_every_check(on):
    r = judged(on)
    ph = r["phases"][-1]
    assert ph["judgement"]["failures"] == [], ph["judgement"]
    assert ph["judgement"]["t90"].startswith("within")
    assert r["verdict"] == "within"


def test_inputs_are_all_read_before_the_release(on):
    ph = on["phases"][-1]
    assert ph["pre"]["read_at_s"] and all(v <= 0 for v in ph["pre"]["read_at_s"].values())
    pre, _ = prediction.pre_release_input(ph, on)
    assert pre.read_at_s == ph["pre"]["read_at_s"]


def test_the_prediction_does_not_read_the_after_release_captures(on):
    """Replace everything measured after the release with garbage: the predicted figures stay."""
    r = copy.deepcopy(on)
    ph = r["phases"][-1]
    want = judged(on)["phases"][-1]
    ph["captures"]["freed"] = ph["captures"]["settled"] = ph["pre"]["capture"]
    ph["snapshots"]["freed"] = ph["snapshots"]["held"]
    ph["freed_mib"] = 5000
    prediction.predict(r)
    for k in ("predicted_mib", "predicted_lo_mib", "predicted_hi_mib", "predicted_curve"):
        assert ph[k] == want[k], k


def test_a_late_model_input_is_refused():
    with pytest.raises(ModelError, match="after the release"):
        R.PreRelease(kernel="6.1", order=9, zones=(), blocks=(), held=b"", mapped=(), unmapped=(),
                     read_at_s={"capture": 0.4})


def test_the_predicted_layout_matches_the_real_one_block_by_block(on):
    lay = judged(on)["phases"][-1]["layout"]
    # measured: 471 of 473 real blocks >= order 9 predicted at their pfn and order; the two
    # others are a THP the kernel kept on its per-cpu list where the model freed it (pcp_residue)
    # and a block some other guest activity freed (guest_frees)
    assert lay["matched"] >= lay["real"] - 2 and lay["predicted"] - lay["matched"] <= 1, lay


@pytest.mark.parametrize("what, params", [
    ("delay doubled", ReportingParams(delay_s=4.0)),
    ("capacity halved", ReportingParams(capacity=16)),
    ("budget off by one", ReportingParams(budget_offset=1)),
    ("budget divisor halved", ReportingParams(budget_divisor=8)),
])
def test_a_planted_kernel_constant_error_is_caught(on, what, params):
    r = judged(on, params)
    assert r["verdict"] == "outside", what


@pytest.mark.parametrize("what, params", [
    ("delay doubled", ReportingParams(delay_s=4.0)),
    ("capacity halved", ReportingParams(capacity=16)),
    ("budget off by one", ReportingParams(budget_offset=1)),
    ("budget one short", ReportingParams(budget_offset=-1)),
    ("budget divisor halved", ReportingParams(budget_divisor=8)),
    ("the wrong order", ReportingParams(order=10)),
])
def test_a_planted_kernel_constant_error_is_caught_on_6_12(what, params):
    # the restored 6.12 x 10.0 run whose first plateau lies between the curves with and without
    # the decay's blocks: that room must not let a wrong constant through
    r = load("decay_first_pass_above_6.12_on")
    assert judged(r)["verdict"] == "within"
    assert judged(r, params)["verdict"] == "outside", what


def test_a_dropped_pass_is_caught(monkeypatch):
    # On the settled capture. On the unsettled one the interval's residue runs free more
    # blocks and run a pass more, so with the last pass dropped from every run the total reads
    # 762 [760, 1027.6] against 1018; its curve's last plateau caught it by 2 MiB, which the
    # block that capture has and the model did not predict (it takes the slot of one order-10
    # block in a last pass with no room: pushed_mib, 4 MiB) now allows.
    r = load("touch_free_settled_6.1_on")
    real = reporting.run_until_idle
    monkeypatch.setattr(reporting, "run_until_idle", lambda *a, **k: real(*a, **k)[:-1])
    assert judged(r)["verdict"] == "outside"


def test_a_discard_qemu_would_skip_is_caught():
    off = load("touch_free_6.1_off")
    assert judged(off)["verdict"] == "within"
    wrong = copy.deepcopy(off)
    wrong["reporting_negotiated"] = True        # the model counts discards QEMU never made
    assert judged(wrong)["verdict"] == "outside"


def test_the_wrong_reporting_order_is_caught(on):
    """11 is what 6.1's sysfs reads before the driver registers (MAX_ORDER): nothing reportable."""
    assert judged(on, ReportingParams(order=11))["verdict"] == "outside"


def test_fragment_both_phases_within_and_the_punch_layout_exact():
    r = judged(load("fragment_6.1_on"))
    punch, rest = r["phases"]
    assert r["verdict"] == "within", [ph["judgement"]["failures"] for ph in r["phases"]]
    assert punch["predicted_mib"] == 0 and punch["layout"]["exact"], punch["layout"]
    assert rest["layout"]["matched"] >= rest["layout"]["real"] - 2


def test_6_12_predicted_exactly():
    """Debian 6.12.117 under QEMU 10.0.2: the release's layout predicted block for block."""
    r = judged(load("touch_free_6.12_on"))
    ph = r["phases"][-1]
    assert r["verdict"] == "within", ph["judgement"]
    assert ph["layout"]["exact"] and ph["layout_reported"]["exact"], (ph["layout"], ph["layout_reported"])


def test_a_pre_release_state_taken_after_reporting_began_is_caught(on):
    late = copy.deepcopy(on)
    ph = late["phases"][-1]
    ph["pre"]["capture"] = ph["captures"]["settled"]      # the blocks already reported and discarded
    assert judged(late)["verdict"] == "outside"


def test_a_late_capture_of_the_workload_pages_is_caught(on):
    """The release's pages read after it (nothing mapped any more): the model frees nothing."""
    late = copy.deepcopy(on)
    late["phases"][-1]["pre"]["mapped"] = late["phases"][-1]["pre"]["unmapped"] = []
    assert judged(late)["verdict"] == "outside"


def test_the_interval_is_not_a_function_of_the_nominal_size(on):
    a, b = copy.deepcopy(on), copy.deepcopy(on)
    a["phases"][-1]["freed_mib"], b["phases"][-1]["freed_mib"] = 0, 5000
    pa, pb = judged(a)["phases"][-1], judged(b)["phases"][-1]
    assert (pa["predicted_lo_mib"], pa["predicted_hi_mib"]) == (pb["predicted_lo_mib"], pb["predicted_hi_mib"])


@pytest.mark.parametrize("args, rc", [([], 0), (["--delay", "4"], 1), (["--capacity", "16"], 1),
                                      (["--budget-divisor", "8"], 1)])
def test_predict_cli_what_ifs(args, rc, capsys):
    assert cli.main(["predict", str(DATA / "touch_free_6.1_on.json"), *args]) == rc
    out = capsys.readouterr().out
    assert ("WITHIN" if rc == 0 else "OUTSIDE") in out.splitlines()[-1]


# --- the free path, on made-up states (pure) -----------------------------------------------

def test_free_order_6_1_frees_thps_first_then_small_pages_in_reverse():
    runs = [R.Run(100, 3), R.Run(512, 512, True), R.Run(2000, 2)]
    seq = R.free_order(runs, (6, 1))
    # the first gather batch holds 8 entries: all of them
    assert seq == [(512, 512, True, False), (2000, 2, False, True), (100, 3, False, True)]
    assert R.free_order(runs, (6, 12)) == [(100, 3, False, False), (512, 512, True, False), (2000, 2, False, False)]


def test_a_partly_unmapped_thp_is_not_freed():
    mapped = [R.Run(512, 512, True)]
    half = [R.Run(512 + 256, 256, True)]
    f = R.pages_freed_by_unmap(mapped, half)
    assert f.runs == () and f.deferred_thp == 1
    whole = R.pages_freed_by_unmap([R.Run(512, 256, True)], [R.Run(512, 256, True)])
    assert whole.runs == (R.Run(512, 512, True),)      # the rest was unmapped before: freed whole


def _zone_with_free_pcp(version):
    from harness.model.kernel import kernel_spec
    spec = kernel_spec("6.1" if version < (6, 2) else "6.12")
    zs = R.ZoneState(node=0, name="DMA32", start=4096, end=4096 + (1 << 18), wmark_min=0, wmark_low=0,
                     wmark_high=0, pcps=(R.Pcp(0, 0, 6985, 63),))
    z = R.zone_model(zs, spec)
    return z, R.PcpList(z, zs.pcps[0], version)


def test_6_1_pcp_keeps_between_high_minus_the_largest_drain_and_high_after_a_long_free():
    """nr_pcp_free: batch << free_factor up to batch << 5 = 2016: after 64 Ki order-0 frees the
    list holds the newest high - 2016 .. high - 1 pages; the rest merged into free blocks."""
    z, pl = _zone_with_free_pcp((6, 1))
    pl.free(R.Run(8192, 65536))
    assert 6985 - 2016 <= pl.count < 6985
    assert sum(n for _, n in pl.residue()) == pl.count
    assert pl.residue()[-1][0] + pl.residue()[-1][1] == 8192 + 65536     # the newest pages stay
    assert z.free_pages == 65536 - pl.count


def test_6_12_pcp_decays_to_high_min():
    z, pl = _zone_with_free_pcp((6, 12))
    pl.high_min = 1000
    pl.free(R.Run(8192, 65536))
    while pl.high > pl.high_min:
        pl.decay_step()
    assert pl.count <= 1000 and pl.high == 1000


def test_qemu_own_growth_widens_only_the_low_side_of_the_rss_figure(on):
    # QEMU's heap crept 0.2 MiB over a hugetlbfs release (RAM outside Rss, predicted 0 in
    # [0, 0]); the run's growth before the release bounds it, on the low side only
    base = judged(on)["phases"][-1]
    grown = copy.deepcopy(on)
    before = grown["phases"][-1]["pre"].get("qemu_own_growth_mib", 0.0)
    grown["phases"][-1]["pre"]["qemu_own_growth_mib"] = before + 0.4
    g = judged(grown)["phases"][-1]
    assert g["predicted_lo_mib"] == pytest.approx(base["predicted_lo_mib"] - 0.4, abs=0.051)
    assert g["predicted_hi_mib"] == base["predicted_hi_mib"]
    term = next(t for t in g["terms"] if t["name"] == "qemu_own_growth")
    assert (term["lo_mib"], term["hi_mib"]) == (pytest.approx(-(before + 0.4)), 0.0)
    # the RAM mapping's figure has no QEMU heap in it
    mapping = prediction.predict_release_phase(grown["phases"][-1], grown, metric="mapping")
    assert all(t["name"] != "qemu_own_growth" for t in mapping["terms"])


def _with_stat(result: dict, free_mib=None, at_s=None) -> dict:
    """The stored run with a guest statistic as the settled capture counted it (kpageflags free
    pages equal vmstat nr_free_pages, which stat-free-memory is, in these captures)."""
    from harness.measure.perblock import Capture
    r = copy.deepcopy(result)
    ph = r["phases"][-1]
    settled = sum(b.pages for b in Capture.from_json(ph["captures"]["settled"]).blocks) / 256
    ph["guest_stats_settled"] = [at_s if at_s is not None else ph["samples"][-1][0], 0,
                                 settled if free_mib is None else free_mib(settled), None, None]
    return r


def _pcp_count(phase: dict, cpu: int) -> int:
    """Pages on one CPU's per-cpu lists, all zones, in the capture before the release."""
    from harness.measure.perblock import Capture
    return sum(p.count for z in Capture.from_json(phase["pre"]["capture"]).scan.zoneinfo for p in z.pagesets
               if p.cpu == cpu)


def test_the_guest_free_memory_is_predicted_from_before_the_release():
    ph = judged(_with_stat(load("touch_free_6.1_on")))["phases"][-1]
    fm = ph["free_memory"]
    assert fm["verdict"] == "within" and abs(fm["measured_mib"] - fm["expected_mib"]) < 0.1, fm
    # terms: residue, unknown pcp pages, idle activity; the release left free_factor > 0, so a
    # free_high drain can give back every page CPU 0's lists held before it
    assert ph["model"]["inputs"]["free_high_drain"]
    # the model's own drains (a THP the touch left on CPU 0's list) are counted free; the rest
    # of CPU 0's pages may follow
    unknown = next(t for t in fm["terms"] if t["name"] == "pcp_unknown_pages")
    inputs = ph["model"]["inputs"]
    assert inputs["unknown_drained"] == _pcp_count(ph, cpu=0) and inputs["model_unknown_drained"] == 512
    assert unknown["hi_mib"] == pytest.approx((_pcp_count(ph, cpu=0) - 512) / 256, abs=0.01)
    assert fm["hi_mib"] - fm["lo_mib"] == pytest.approx(sum(t["hi_mib"] - t["lo_mib"] for t in fm["terms"]), abs=0.02)
    assert ph["judgement"]["free_memory"].startswith("within")


def test_the_free_memory_statistic_may_hold_the_cpus_unfolded_differentials():
    # 6.12 capture: vm stats threshold 4 (DMA) and 20 (DMA32) on each of 2 CPUs: 48 pages
    # either way that NR_FREE_PAGES's global counter may not have yet
    r = load("decay_first_pass_above_6.12_on")
    fm = judged(r)["phases"][-1]["free_memory"]
    term = next(t for t in fm["terms"] if t["name"] == "vmstat_unfolded")
    assert (term["lo_mib"], term["hi_mib"]) == (-0.19, 0.19), term
    # planted: the statistic 53 pages beyond the room the other terms leave, either side:
    # outside; 43: within (the figures are kept to 0.01 MiB: 4 pages of rounding each way)
    for pages, verdict in ((53, "outside"), (-53, "outside"), (43, "within"), (-43, "within")):
        side = fm["hi_mib"] - 0.1875 if pages > 0 else fm["lo_mib"] + 0.1875
        out = copy.deepcopy(r)
        out["phases"][-1]["guest_stats_settled"][2] = round(side + pages / 256, 2)
        assert judged(out)["phases"][-1]["free_memory"]["verdict"] == verdict, (pages, side)


@pytest.mark.parametrize("what,free_mib", [
    ("a statistic read before the release (the freed GiB not yet free)", lambda m: m - 1024),
    ("the statistic in MiB of 1000 KiB", lambda m: m * 1.024),
    ("a guest that kept 64 MiB of the release", lambda m: m - 64),
    ("a guest with 32 MiB more free than the model can explain", lambda m: m + 32),
])
def test_a_planted_free_memory_error_fails_the_phase(on, what, free_mib):
    ph = judged(_with_stat(on, free_mib))["phases"][-1]
    assert ph["free_memory"]["verdict"] == "outside" and ph["verdict"] == "outside", what


def test_a_model_that_frees_half_the_pages_fails_the_free_memory_check(on):
    r = _with_stat(on)
    pre = r["phases"][-1]["pre"]
    pre["unmapped"] = pre["unmapped"][: len(pre["unmapped"]) // 2]
    assert judged(r)["phases"][-1]["free_memory"]["verdict"] == "outside"


@pytest.mark.parametrize("name,measured,interval", [
    # 988 MiB against 956 [916, 1032]: after three passes the model had 89.9% of its total, the
    # guest 90.2% of its larger one: 90% a pass before the model's (the late end follows the
    # residue's bound, one list's high + a THP for each of the two lists the release reached)
    ("numa2_6.1_on", 6.24, (4.19, 11.68)),
    # a free block >= the order pending 0.25 s before the release: the worker was already
    # scheduled, the first pass came 1.6 s after the release
    ("fragment_early_worker_6.1_on", 7.57, (6.18, 10.23)),
])
def test_the_time_to_90_percent_follows_the_total_left_open_and_an_early_worker(name, measured, interval):
    ph = judged(load(name))["phases"][-1]
    lo, hi = ph["predicted_t90_interval_s"]
    assert ph["measured_t90_s"] == measured and ph["verdict"] == "within", ph["judgement"]["failures"]
    assert interval[0] <= lo < measured < hi <= interval[1], (lo, hi)


def test_without_a_pending_block_the_first_pass_is_the_release_s():
    # fragment_6.1_on: nothing pending before either release, so nothing moves a first pass
    # earlier; a pending block (a stuck one, or a fresh one the worker is due for) may
    assert all(prediction.worker_may_be_early_s(PreRecord.from_json(ph["pre"])) == 0.0
               for ph in load("fragment_6.1_on")["phases"])
    r = load("fragment_early_worker_6.1_on")
    assert prediction.worker_may_be_early_s(PreRecord.from_json(r["phases"][-1]["pre"])) == pytest.approx(2.0 - 0.253)


def test_a_reporting_delay_twice_the_kernel_s_fails_the_time_to_90_percent():
    ph = judged(load("numa2_6.1_on"), ReportingParams(delay_s=4.0))["phases"][-1]
    assert ph["judgement"]["t90"].startswith("outside"), ph["judgement"]


# --- a restored guest's release with the worker already due (first pass 1.4 s after it) ----

def test_a_worker_due_at_the_release_shifts_the_whole_curve_and_nothing_else():
    r = load("restored_early_worker_6.1_on")
    ph = judged(r)["phases"][-1]
    assert prediction.worker_may_be_early_s(PreRecord.from_json(r["phases"][-1]["pre"])) == pytest.approx(2.0 - 0.115)
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    # held to the model's own schedule, unshifted, the same steps read outside
    unshifted = prediction._curve_misses(
        r["phases"][-1]["samples"], ph["predicted_curve"], 1, r["phases"][-1]["rss_peak_mib"],
        ph["predicted_mib"] - ph["predicted_lo_mib"], ph["predicted_hi_mib"] - ph["predicted_mib"], 0.0, 0.5,
        r["phases"][-1]["release_s"])
    assert unshifted, "the capture should need the shift"


@pytest.mark.parametrize("params", [ReportingParams(delay_s=4.0), ReportingParams(capacity=16),
                                    ReportingParams(budget_divisor=8)], ids=["delay4", "capacity16", "divisor8"])
def test_no_shift_fits_a_wrong_pace(params):
    ph = judged(load("restored_early_worker_6.1_on"), params)["phases"][-1]
    assert ph["verdict"] == "outside", ph["judgement"]


def test_a_pass_late_by_the_suite_s_measured_latency_is_within():
    # one pass, 90% at 2.35 s against 2.005: two TCG guests on two cores. The block pending
    # 0.23 s before the release (pfn 87808, order 8) is one the host held none of: the release
    # does not wait for it (perblock.asked), and here its pass came on time, not early; the
    # judge still allows an early worker for it (a 3 GiB run's pass came 0.6 s early with only
    # such blocks pending).
    r = load("order8_late_pass_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["measured_t90_s"] == 2.35 and ph["verdict"] == "within", ph["judgement"]["failures"]
    assert 0.0 < prediction.worker_may_be_early_s(PreRecord.from_json(r["phases"][-1]["pre"])) <= 2.0


@pytest.mark.parametrize("params", [ReportingParams(delay_s=1.0)], ids=["delay1"])
def test_a_wrong_delay_is_caught_on_the_late_pass_capture(params):
    # the curve holds the pass to its time less the early worker's allowance: a delay half the
    # kernel's misses it. A delay twice the kernel's fits this one-pass phase once a worker may
    # have been due at the release (an early pass of up to 1.8 s); the multi-pass captures
    # catch it (test_a_planted_kernel_constant_error_is_caught, test_no_shift_fits_a_wrong_pace)
    ph = judged(load("order8_late_pass_6.1_on"), params)["phases"][-1]
    assert ph["verdict"] == "outside", ph["judgement"]


def test_the_verdict_reuses_the_end_plans_model_run_and_only_that(on, monkeypatch):
    r = copy.deepcopy(on)
    ph = r["phases"][-1]
    calls = []
    real = prediction._model_run
    monkeypatch.setattr(prediction, "_model_run", lambda *a: calls.append(a[2]) or real(*a))
    plan_inputs = {k: ph[k] for k in ("pre", "snapshots", "reportable_order")}
    prediction.end_plan({**plan_inputs, "end": ph.get("end")}, r)
    prediction.predict(r)
    assert len(calls) == 1 and r["verdict"] == "within"
    fresh = judged(on)  # a copy of the same records: its own run, the same verdict and terms
    assert fresh["verdict"] == "within" and len(calls) == 2
    assert fresh["phases"][-1]["terms"] == r["phases"][-1]["terms"]
    # a plan that presumed other captures after the release than the phase took is not reused
    r2 = copy.deepcopy(on)
    ph2 = r2["phases"][-1]
    prediction.end_plan({**{k: ph2[k] for k in ("pre", "snapshots", "reportable_order")},
                         "end": {"how": "scan", "scans": 4}}, r2)
    prediction.predict(r2)
    assert len(calls) == 4 and r2["phases"][-1]["terms"] == r["phases"][-1]["terms"]
    prediction.predict(r, ReportingParams(delay_s=4.0))  # another input: another run
    assert len(calls) == 5 and r["verdict"] == "outside"


def test_blocks_completed_during_the_release_are_in_the_high_side_and_its_extra_pass():
    # 84 regions 2 pages short at the capture (transient allocations); the kernel completed 64
    # of them and their blocks came one pass after the model's last
    r = judged(load("fragment_completed_6.1_on"))
    rest = r["phases"][1]
    assert rest["drop_mib"] > rest["predicted_mib"] + 200 and rest["verdict"] == "within", rest["judgement"]
    frees = next(t for t in rest["terms"] if t["name"] == "guest_frees")
    assert frees["hi_mib"] >= 100
    assert rest["predicted_t90_interval_s"][1] > rest["measured_t90_s"] > rest["model"]["passes"][-1]["t_end"] + 2


def test_the_old_guest_frees_bound_misses_the_completed_blocks(monkeypatch):
    # planted: each freed page worth 1/512 of a block, wherever it lands (the bound before)
    from harness.model import release
    real = release.predict_release

    def old(*a, **k):
        pred, rel, lay = real(*a, **k)
        frees = next(t for t in pred.terms if t.name == "guest_frees")
        terms = tuple(t if t is not frees else dataclasses.replace(t, hi_mib=2.0) for t in pred.terms)
        return dataclasses.replace(pred, terms=terms, hi_mib=pred.hi_mib - frees.hi_mib + 2.0), rel, lay

    monkeypatch.setattr(prediction, "predict_release", old)
    r = judged(load("fragment_completed_6.1_on"))
    assert r["phases"][1]["verdict"] == "outside"


def test_an_early_pass_with_only_unheld_blocks_pending_is_allowed(monkeypatch):
    # 3 GiB restored: pfns 183808 and 184832 (order 9, none held) pending; the passes came 0.6 s early
    r = load("normal_zone_early_unheld_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    # planted: the judge presuming such blocks asked nothing (the release's own wait rule)
    real = prediction.asked
    monkeypatch.setattr(prediction, "asked", lambda cap, stuck, unheld_ask_none=True: real(cap, stuck, True))
    assert judged(r)["phases"][-1]["verdict"] == "outside"


def test_our_other_commands_in_the_window_are_guest_allocations(monkeypatch):
    # the release's SSH command and the snapshot after it allocate as a vmstat read does at least
    # (this run once read 0.5 MiB below the low side without them; that was the model's THP of
    # CPU 0's list, test_a_thp_the_touch_left_on_the_lists_is_drained_first: now it is exact)
    r = load("normal_zone_commands_6.1_on")
    ph = judged(r)["phases"][-1]
    # one block off: the unmap's page tables shared between DMA32 and Normal (release_tables_split)
    assert ph["verdict"] == "within" and abs(ph["drop_mib"] - ph["predicted_mib"]) <= 2.0, ph["judgement"]["failures"]
    alloc = next(t for t in ph["terms"] if t["name"] == "guest_allocations")
    assert "2 other command(s)" in alloc["explanation"]
    # planted: only the captures counted: the low side moves up by the commands' block
    real = R.Activity.ours
    monkeypatch.setattr(R.Activity, "ours", lambda self, captures=None: real(
        dataclasses.replace(self, commands_in_window=0), captures))
    assert judged(r)["phases"][-1]["predicted_lo_mib"] == ph["predicted_lo_mib"] + 2.0


def test_a_free_high_drain_can_give_back_every_per_cpu_page(monkeypatch):
    # 6.1: the release left free_factor > 0 on CPU 0; an order 1-3 free there drained its lists
    # whole (6924 -> 185 pages) and the guest's free memory rose 26.3 MiB
    r = load("free_high_drain_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    assert ph["model"]["inputs"]["free_high_drain"]
    # planted: the drains during the release as the only way back (the bound before): the
    # guest's free memory lands 2.3 MiB over the high side
    real = R.run_release
    monkeypatch.setattr(R, "run_release", lambda pre, **kw: dataclasses.replace(real(pre, **kw),
                                                                             free_high_drain=False))
    out = judged(r)["phases"][-1]
    assert out["verdict"] == "outside"
    assert out["judgement"]["free_memory"].startswith("outside")


def test_a_phase_without_before_the_release_records_is_refused(on, capsys, tmp_path):
    r = copy.deepcopy(on)
    del r["phases"][-1]["pre"]
    with pytest.raises(ModelError, match="no `pre` record"):
        prediction.predict(copy.deepcopy(r))
    path = tmp_path / "old.json"
    path.write_text(json.dumps(r))
    assert cli.main(["predict", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no `pre` record" in err


def test_with_our_activity_off_the_workloads_cpu_the_free_memory_is_exact(monkeypatch):
    # our SSH sessions and the interrupts on CPU 1: no free_high drain of CPU 0's lists, and the
    # guest's own free memory equals the model's free pages after the release to the page
    r = load("touch_free_quiet_cpu_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    fm = ph["free_memory"]
    assert abs(fm["measured_mib"] - fm["expected_mib"]) < 0.05, fm
    # every predicted block is there; the one real block more is the THP from before the release
    lay = ph["layout"]
    assert (lay["real"], lay["predicted"], lay["matched"], lay["unplaced_predicted"]) == (474, 473, 473, 1)
    # planted: the release's pages the model leaves on CPU 0's lists counted as free
    real = prediction.free_memory_check
    monkeypatch.setattr(prediction, "free_memory_check", lambda free, residue, *a, **kw: real(
        free + residue, residue, *a, **kw))
    out = judged(r)["phases"][-1]
    assert out["judgement"]["free_memory"].startswith("outside") and out["verdict"] == "outside"


@pytest.mark.parametrize("name", ["touch_free_quiet_cpu_6.1_on", "restored_early_worker_6.1_on",
                                  "order8_late_pass_6.1_on", "touch_free_6.1_on"])
def test_a_thp_the_touch_left_on_the_lists_is_drained_first(monkeypatch, name):
    # 6.1 refills the THP list two at a time, so the touch can leave one there, the oldest of the
    # list: the first THP drain takes it, not the release's. Its block is the one real block the
    # model cannot place, and the drop comes within 0.25 MiB of the prediction (was 2-2.2 MiB over)
    r = load(name)
    ph = judged(r)["phases"][-1]
    lay = ph["layout"]
    assert lay["matched"] == lay["predicted"] == lay["real"] - 1 and lay["unplaced_predicted"] == 1
    assert lay["only_real"] == 1 and lay["first_only_real"][0][1] == 9
    assert abs(ph["drop_mib"] - ph["predicted_mib"]) < 0.25
    # planted: no THP there (the model before): the release's THP drained, 2 MiB too much
    real = R.PcpList.__init__

    def no_thp(self, *a, **kw):
        real(self, *a, **kw)
        if self.thp == [-1]:
            self.thp, self.elsewhere = [], self.elsewhere + (1 << self.zone.pb_order)
    monkeypatch.setattr(R.PcpList, "__init__", no_thp)
    out = judged(r)["phases"][-1]
    assert out["predicted_mib"] - out["drop_mib"] >= 2.0 and out["layout"]["only_predicted"] >= 1


def test_a_settled_release_is_judged_on_an_interval_of_the_models_own_runs():
    # e2emem faulted in 4 pages after the unmap (6.1's free_factor back to 0: no free_high drain
    # can follow) and our commands ran on CPU 1: pcp_residue is the model run with the count a
    # refill batch either way and the other THP parity, not 0 .. high + a THP
    r = load("touch_free_settled_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    inputs = ph["model"]["inputs"]
    assert not inputs["free_high_drain"]
    # the release's pages not free right after it (on the lists, or the faults' 4) are the model's
    # residue and the 4 its faults took, to the page
    from harness.measure.perblock import Capture
    free = {p for b in Capture.from_json(ph["captures"]["freed"]).blocks for p in range(b.head, b.head + b.pages)}
    not_free = sum(1 for run in ph["pre"]["unmapped"] for p in range(run[0], run[0] + run[1]) if p not in free)
    assert (inputs["residue_pages"], not_free) == (3580, 3580 + 4)
    terms = {t["name"]: t for t in ph["terms"]}
    assert "either way" in terms["pcp_residue"]["explanation"]
    width = ph["predicted_hi_mib"] - ph["predicted_lo_mib"]
    assert width == pytest.approx(sum(t["hi_mib"] - t["lo_mib"] for t in ph["terms"]), abs=0.01)
    assert width <= max(0.02 * ph["predicted_mib"], 16.0), width           # the issue's goal: 13.6 <= 20.2
    assert ph["free_memory"]["verdict"] == "within"
    lay = ph["layout"]
    assert (lay["predicted"], lay["real"], lay["matched"], lay["unplaced_predicted"]) == (475, 476, 475, 1)


@pytest.mark.parametrize("what, delta_mib", [
    ("QEMU skipped the discards of 4 reported blocks", -8.0),
    ("the guest gave back 6 blocks more than the model can explain", +12.0),
])
def test_a_settled_release_catches_errors_the_wide_residue_term_let_through(what, delta_mib):
    r = load("touch_free_settled_6.1_on")
    r["phases"][-1]["drop_mib"] += delta_mib
    assert judged(r)["phases"][-1]["verdict"] == "outside", what
    # the same drop against the wide term (the release not known to be settled) reads within
    r["phases"][-1]["pre"]["faults_after"] = 0
    assert judged(r)["phases"][-1]["verdict"] == "within", what


def test_the_workloads_faults_take_the_newest_pages_and_settle_free_factor():
    pre, _ = prediction.pre_release_input(*(lambda r: (r["phases"][-1], r))(load("touch_free_settled_6.1_on")))
    m, _ = R.machine_before(pre)
    zone = next(z for z in m.zones if z.name == "DMA32")
    pl = R.PcpList(zone, R.Pcp(0, 0, 6985, 63), (6, 1))
    pl.order0 = [[100, 3, False], [200, 2, True]]      # freed 100..102, then 201, 200: 200 newest
    pl.count, pl.free_factor = 5, 5
    pl.allocate(3)
    assert pl.order0 == [[100, 2, False]] and pl.count == 2 and pl.free_factor == 0   # 5 -> 2 -> 1 -> 0
    assert not pl.refilled
    pl.allocate(3)                                       # two left: the third needs a refill
    assert not pl.refilled and pl.order0 and all(len(e) == 4 for e in pl.order0)
    assert pl.count == 63 - 1 and pl.residue() == []     # a batch from the buddy lists, one taken
    # a settled release needs all of: 6.1, the workload's unmap after it allocated, faults, our
    # commands on another CPU, and no free_high drain or refill left by them
    rel = R.run_release(pre)
    assert R.settled_release(pre, rel)
    for change in ({"faults_after": 0}, {"ours_cpu": 0}, {"pcp_taken": False}, {"kind": "drop_caches"}):
        p = dataclasses.replace(pre, **change)
        assert not R.settled_release(p, R.run_release(p)), change


def test_the_thp_a_touch_left_on_the_list_is_found_before_the_release():
    # e2epfn's P class: the THP the touch left on CPU 0's list is the one flagless aligned 2 MiB
    # block before the release, so the model places it: every block right after the release
    # predicted at its pfn and order, none unplaced, and the guest's free memory to the page
    r = load("touch_free_flagless_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    lay = ph["layout"]
    assert (lay["predicted"], lay["real"], lay["matched"], lay["unplaced_predicted"]) == (476, 476, 476, 0)
    assert ph["free_memory"]["measured_mib"] == pytest.approx(ph["free_memory"]["expected_mib"], abs=0.01)
    assert abs(ph["drop_mib"] - ph["predicted_mib"]) < 0.25
    # planted: the capture read as before the P class (version 1): the THP's position unknown
    old = copy.deepcopy(r)
    for key in ("capture",):
        old["phases"][-1]["pre"][key]["e2epfn"] = old["phases"][-1]["pre"][key]["e2epfn"].replace("e2epfn 2\n", "e2epfn 1\n", 1)
    lay = judged(old)["phases"][-1]["layout"]
    assert lay["unplaced_predicted"] == 1 and lay["matched"] == lay["real"] - 1


def test_no_flagless_block_means_no_thp_was_left_on_the_lists():
    # integrity: 1610 pages off CPU 0's order-0 list before the release, yet no flagless
    # aligned 2 MiB block; the kernel drained the release's own first THP first (ftrace), and
    # the model, told there is none, predicts both cycles block for block
    r = judged(load("integrity_flagless_6.1_on"))
    for ph in r["phases"]:
        lay = ph["layout"]
        assert ph["verdict"] == "within", (ph["phase"], ph["judgement"]["failures"])
        assert lay["predicted"] == lay["real"] == lay["matched"] and lay["unplaced_predicted"] == 0, lay
        assert abs(ph["drop_mib"] - ph["predicted_mib"]) < 0.25
    # planted: the rule without the scan (>= 512 pages elsewhere: a THP there): a block short
    old = load("integrity_flagless_6.1_on")
    for ph in old["phases"]:
        ph["pre"]["capture"]["e2epfn"] = ph["pre"]["capture"]["e2epfn"].replace("e2epfn 2\n", "e2epfn 1\n", 1)
    for ph in judged(old)["phases"]:
        assert ph["layout"]["matched"] < ph["layout"]["real"] and ph["predicted_mib"] < ph["drop_mib"] - 1, ph["phase"]


def test_the_models_thp_drains_are_the_kernels_one_by_one(monkeypatch):
    # ftrace (kmem/mm_page_pcpu_drain, order 9) of the same release: the kernel's 506 THP drains
    # during the munmap, in order; the model's, from the state before the release, are the same
    # pfns in the same order, the THP the touch had left on the list first
    r = load("touch_free_traced_6.1_on")
    kernel = json.loads((DATA / "touch_free_traced_6.1_on.ftrace.json").read_text())["thp_drain_pfns"]
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    assert len(kernel) == 506 and list(R.run_release(pre).thp_drains) == kernel
    # planted: the list's THP from before ignored (the parity the other way): every drain one late
    assert list(R.run_release(pre, thp_left=False).thp_drains)[:3] == kernel[1:4]
    # the count a refill batch either way (the settled pcp_residue term's runs) drains the same
    assert all(list(R.run_release(pre, count_offset=d).thp_drains) == kernel for d in (-126, 126))
    # planted: a drain taking the list's newest THP (list_first_entry) instead of its oldest
    real = R.PcpList._drain_thp

    def newest_first(self, n):
        self.thp.reverse()
        try:
            return real(self, n)
        finally:
            self.thp.reverse()
    monkeypatch.setattr(R.PcpList, "_drain_thp", newest_first)
    assert list(R.run_release(pre).thp_drains) != kernel


def test_6_12_decay_drains_a_batch_per_call_and_a_thp_counts_as_one(monkeypatch):
    # Debian 6.12.117 decay_pcp_high frees count - high in calls of batch pages (kprobes: 12
    # and 21 calls of 63); a call that reaches the THP list frees 512 pages and counts 63
    r = load("touch_free_6.12_decay_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    fm = ph["free_memory"]
    assert abs(fm["measured_mib"] - fm["expected_mib"]) < 0.1, fm        # 1902.81 / 1902.77
    assert abs(ph["drop_mib"] - ph["predicted_mib"]) < 1.0                # 1003.1 / 1004.0
    # planted: one call for the whole count - high (6.12.57's source): 6.8 MiB of it missing
    real = R.kernel_spec
    monkeypatch.setattr(R, "kernel_spec", lambda *a, **kw: dataclasses.replace(real(*a, **kw), batched_decay=False))
    wrong = judged(r)["phases"][-1]["free_memory"]
    assert fm["measured_mib"] - wrong["expected_mib"] > 5.0, wrong


def test_kernel_spec_knows_which_6_12_batches_its_decay():
    from harness.model.kernel import kernel_spec
    assert kernel_spec("6.12.117+deb13-amd64").batched_decay
    assert not kernel_spec("6.12.57+deb12-amd64").batched_decay
    assert not kernel_spec("6.1.0-57-amd64").batched_decay


def test_6_1_drop_caches_ends_with_its_cpus_lists_drained_whole(monkeypatch):
    # 6.1 drop_caches: the page cache's xarray nodes go back through RCU after the drop, and an
    # order-1 slab page freed with free_factor > 0 drains CPU 0's lists whole (traced: count 6236
    # = pcp->count from rcu_do_batch 24 ms after the drop's last batch; count 0 after)
    trace = json.loads((DATA / "page_cache_6.1_on.trace.json").read_text())
    rcu = trace["calls_after_drop"][0]
    assert rcu["count"] == rcu["pcp_count"] and "rcu_do_batch" in rcu["stack"] and trace["pcp_after"]["count"] == 0
    r = load("page_cache_6.1_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    rel = R.run_release(pre)
    assert rel.drained_after and rel.residue == []
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    # every predicted block is there; the 2 more real ones are the regions the term names
    lay = ph["layout"]
    assert lay["predicted"] == lay["matched"] == 478 and lay["real"] == 480
    fm = ph["free_memory"]
    assert abs(fm["measured_mib"] - fm["expected_mib"]) < 1.5, fm          # 1926.09 / 1924.84
    assert ph["predicted_hi_mib"] - ph["predicted_lo_mib"] <= 20.0            # was 52 without the drain
    # planted: no drain after the drop (the model's residue of 6504 pages stays on the list):
    # the drop reads 26 MiB over the centre, outside
    monkeypatch.setattr(R.PcpList, "drain_all", lambda self: None)
    out = judged(r)["phases"][-1]
    assert out["verdict"] == "outside" and out["judgement"]["total"].startswith("outside"), out["judgement"]


def test_drained_pages_of_unknown_position_complete_only_regions_that_were_flagless():
    # a per-cpu page has no kpageflags flag: the drain after the drop completed exactly the three
    # all-flagless 2 MiB regions at the top of RAM (an order-10 and an order-9 block only real),
    # and the term bounds it by those alone
    r = load("page_cache_6.1_on")
    ph = judged(r)["phases"][-1]
    unk = next(t for t in ph["terms"] if t["name"] == "pcp_unknown_pages")
    assert unk["hi_mib"] == 6.0, unk
    assert sorted(map(tuple, ph["layout"]["first_only_real"])) == [(522240, 10), (523264, 9)]
    # without the positions (older captures) the bound is the regions closest to whole, none of
    # which the drain completed: 15.5 MiB where 6 is the truth
    r2 = copy.deepcopy(r)
    pre, _ = prediction.pre_release_input(r2["phases"][-1], r2)
    p, _, _ = R.predict_release(dataclasses.replace(pre, flagless=None), noise_mib=0.0)
    assert next(t for t in p.terms if t.name == "pcp_unknown_pages").hi_mib > 15.0


def test_the_unmaps_pte_tables_go_onto_the_lists_after_its_pages():
    # free-rest unmaps a 1 GiB region mapped with 4 KiB pages: free_pgtables frees its 512 PTE
    # tables into the last gather batch (e2emem `pfns` says how many, from its own maps); CPU
    # 0's count passes high once more, and the guest's free memory is the model's to 0.1 MiB
    r = load("fragment_tables_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["phase"] == "free-rest" and ph["pre"]["page_tables"] == 512
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    fm = ph["free_memory"]
    assert abs(fm["measured_mib"] - fm["expected_mib"]) < 0.1, fm            # 1897.6 / 1897.6
    # planted: the tables forgotten: one drain of 2016 pages fewer, 7.9 MiB under
    r2 = copy.deepcopy(r)
    r2["phases"][-1]["pre"]["page_tables"] = 0
    wrong = judged(r2)["phases"][-1]["free_memory"]
    assert fm["measured_mib"] - wrong["expected_mib"] > 7.0, wrong


def test_free_order_puts_the_page_tables_in_the_last_batch():
    runs = [R.Run(1000, 20)]
    # 6.1: the first batch holds 8 entries, freed high to low; the tables follow the pages and,
    # reversed with the last batch, go first in it
    seq = R.free_order(runs, (6, 1), tables=3)
    assert seq == [(1000, 8, False, True), (-1, 3, False, True), (1008, 12, False, True)]
    assert R.free_order(runs, (6, 12), tables=3)[-1] == (-1, 3, False, False)


def test_pfns_replies_carry_their_fields():
    from harness.measure.prerelease import reply_field
    from harness.scenarios.common import pfn_runs
    reply = "ok pages=515 runs=2 pt=512 100+512h 612+3"
    assert pfn_runs(reply) == [[100, 512, True], [612, 3, False]]
    assert reply_field(reply, "pt") == 512 and reply_field("ok pages=1 runs=1 5+1", "pt") is None
    assert pfn_runs("ok pages=3 runs=1 7+3") == [[7, 3, False]]


def test_6_12_high_read_a_decay_step_before_the_release_misleads_the_model():
    # 6.12 lowers pcp->high by 1/8 once a second (decay_pcp_high): this run's capture read CPU
    # 0's high 11193, and right after the release it was 9794 = 11193 - 11193 // 8 with the count
    # (8480) below it, so the step fell between the capture and the unmap. With the high as read
    # the model drains 4 THPs fewer in the munmap and its decay overdrains: the guest's free
    # memory 17 MiB over the real. The capture right after the release matches the model's
    # layout only after one of its decay ticks (the step the kernel took before the unmap)
    r = load("touch_free_6.12_stale_high_on")
    ph = judged(r)["phases"][-1]
    assert ph["free_memory"]["expected_mib"] - ph["free_memory"]["measured_mib"] > 15.0
    assert ph["layout"]["decay_ticks"] == 1
    # the lists as e2emem now reads them just before its unmap (pcp=...): block for block
    r2 = copy.deepcopy(r)
    r2["phases"][-1]["pre"]["pcp_at_release"] = [[0, "DMA32", 1827, 11193 - 11193 // 8, 63]]
    r2["phases"][-1]["pre"]["read_at_s"]["pcp"] = -0.0002
    ph2 = judged(r2)["phases"][-1]
    assert ph2["verdict"] == "within", ph2["judgement"]["failures"]
    assert abs(ph2["free_memory"]["expected_mib"] - ph2["free_memory"]["measured_mib"]) < 0.1
    lay = ph2["layout"]
    assert lay["predicted"] == lay["matched"] == lay["real"] == 475 and lay["decay_ticks"] == 0
    assert abs(ph2["predicted_mib"] - ph2["drop_mib"]) < 1.0               # 1000.0 / 999.4


def test_the_workloads_own_read_of_its_lists_before_the_unmap():
    from harness.measure.prerelease import pcp_field
    pcp, s = pcp_field("ok ms=12 faults=4 pcp_us=153 pcp=0.DMA:0/0/1,0.DMA32:1826/9821/63")
    assert pcp == ((0, "DMA", 0, 0, 1), (0, "DMA32", 1826, 9821, 63)) and s == pytest.approx(153e-6)
    assert pcp_field("ok ms=12 faults=4") == ((), None)
    # a read after the release would be refused like any other input
    r = copy.deepcopy(load("touch_free_settled_6.1_on"))
    r["phases"][-1]["pre"]["pcp_at_release"] = [[0, "DMA32", 100, 6985, 63]]
    r["phases"][-1]["pre"]["read_at_s"]["pcp"] = 0.01
    with pytest.raises(ModelError, match="after the release"):
        prediction.predict(r)


def test_6_12_is_settled_only_once_free_count_is_under_batch_and_the_lists_were_read_at_the_unmap():
    # a 6.12 run with the lists read at the unmap and 4 faults after it: free_count 2044 -> 127,
    # still >= batch 63, so a free_high can follow and the wide term stays
    r = load("touch_free_6.12_pcp_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    rel = R.run_release(pre)
    assert pre.pcp_read_at_release and pre.faults_after == 4
    assert rel.free_count_high and not R.settled_release(pre, rel)
    # six faults (e2emem's SETTLE_FAULTS now): free_count 31, settled
    six = dataclasses.replace(pre, faults_after=6)
    assert R.settled_release(six, R.run_release(six))
    # without the read at the unmap, not settled (the capture's high can be a decay step old)
    seen = dataclasses.replace(six, pcp_read_at_release=False)
    assert not R.settled_release(seen, R.run_release(seen))


def test_a_settled_6_12_release_is_judged_on_the_models_own_runs():
    # six faults after the unmap (free_count under batch) and the lists read at it: 6.12 settled,
    # 1015.9 vs 1016.0 [1009.4, 1036.6], block for block, the guest's free memory exact
    r = load("touch_free_6.12_settled_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    assert ph["pre"]["faults_after"] == 6 and ph["pre"]["pcp_at_release"]
    # the issue's goal is 2% (20.3 MiB): the term's runs with a decay step inside the release
    # (at its start: test_a_decay_step_at_a_6_12_release_s_start_...) put it at 27.2
    width = ph["predicted_hi_mib"] - ph["predicted_lo_mib"]
    assert width <= 27.3, width
    lay = ph["layout"]
    assert lay["predicted"] == lay["matched"] == lay["real"]
    fm = ph["free_memory"]
    assert abs(fm["measured_mib"] - fm["expected_mib"]) < 0.1, fm
    # a decay step fell between the capture (high 8838) and the unmap (7734 = 8838 - 8838 // 8)
    assert r["phases"][-1]["pre"]["pcp_at_release"][1][3] == 8838 - 8838 // 8
    # planted: the reporting capacity halved: outside
    assert judged(r, ReportingParams(capacity=16))["phases"][-1]["verdict"] == "outside"


def test_a_decay_step_inside_a_6_12_release_is_in_the_settled_term(monkeypatch):
    # A suite's restored 6.12 release: the guest's free memory 907.86 against the model's
    # 903.54, two real blocks (6656/9, 260096/10: regions of pages from before the release, not
    # its THPs) the model did not make, CPU 0's list 5823 pages after it with high 8000, one
    # decay step down from 9142. vmstat's decay had fallen inside the release: it left the count
    # at high, and the release's next order-0 free flushed free_count's 2172 pages from the
    # order-0 lists. The model's run with that step: 5822 pages on the list, 1106 more pages
    # of unknown position drained than its own run (the free memory's 4.3 MiB).
    r = load("restore_drained_more_6.12_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    made = []
    init = R.PcpList.__init__
    monkeypatch.setattr(R.PcpList, "__init__", lambda self, *a, **k: (init(self, *a, **k), made.append(self))[0])
    own, inside = R.run_release(pre), R.run_release(pre, decay_step_at="end")
    assert [pl.count for pl in made if pl.high > 0] == [6928, 5822]
    assert inside.unknown_drained - own.unknown_drained == 1106 and inside.residue == own.residue
    monkeypatch.undo()
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    res = next(t for t in ph["terms"] if t["name"] == "pcp_residue")["explanation"]
    assert "a decay step inside it" in res and "no THP left on the list (none seen)" in res
    assert ph["layout"]["first_only_real"] == [[6656, 9], [260096, 10]]
    # planted: the term without that run: the free memory outside
    _without_runs(monkeypatch, "decay_step_at")
    out = judged(r)["phases"][-1]
    assert out["free_memory"]["verdict"] == "outside", out["free_memory"]


def test_a_decay_step_at_a_6_12_release_s_start_is_in_the_settled_term(monkeypatch):
    # A fresh-clone suite's 6.12 x 10.0 release (1 GiB, CPU 0's high 14322 at the unmap): the
    # model read 1020.0 [1014.4, 1031.6] and the guest's free memory 1937.25, the drop was
    # 1005.4 and the free memory 1913.97. CPU 0's list read 10781 pages with high 12532 (one
    # decay step from 14322) right after the release, then 6985 = high_min. With the step
    # before the release's first free, its frees flush at 12532: the model's run leaves 10780
    # pages (12 THPs; its own run 16), and decay from there ends at high_min, 6985, as the
    # kernel's did; its own run's decay reached the THP list, a THP for each 63-page call,
    # down to 1024.
    r = load("decay_at_start_6.12_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)

    def before_decay(**kw):
        t = R.run_release(pre, tick_layouts=True, **kw).decay_ticks[0]
        return [t.counts[k] for k, h in t.highs.items() if h > 0]
    assert before_decay() + before_decay(decay_step_at="start") == [12828, 10780]
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    # planted: the term without that run: outside
    real = R.run_release
    monkeypatch.setattr(R, "run_release", lambda p, **kw: real(p, **{k: v for k, v in kw.items()
                                                                     if kw.get("decay_step_at") != "start"}))
    assert judged(r)["phases"][-1]["verdict"] == "outside"


def test_a_thp_the_capture_did_not_see_is_not_in_the_settled_term(monkeypatch):
    # 6.12 maps the touch THP-aligned: 512 THPs taken two per refill leave none on the list, and
    # the capture saw no flagless aligned block. The settled term has no run with one (the
    # other parity): the model exact block for block
    ph = judged(load("touch_free_6.12_settled_on"))["phases"][-1]
    res = next(t for t in ph["terms"] if t["name"] == "pcp_residue")
    assert "no THP left on the list (none seen)" in res["explanation"], res
    assert ph["verdict"] == "within" and abs(ph["drop_mib"] - ph["predicted_mib"]) < 0.25
    assert ph["layout"]["matched"] == ph["layout"]["real"]
    # a THP seen keeps the run without it (boot 6.1: test_the_thp_parity_run_is_what_keeps_...)
    boot = judged(load("boot_frees_6.1_on"))["phases"][-1]
    assert "the other THP parity" in next(t for t in boot["terms"] if t["name"] == "pcp_residue")["explanation"]
    # planted: a THP of unknown position on the list (what the parity run assumed): 2 MiB under
    # the drop and a block off
    init = R.PcpList.__init__

    def a_thp_left(self, *a, thp_left=None, **k):
        init(self, *a, thp_left=True if thp_left is None else thp_left, **k)
    monkeypatch.setattr(R.PcpList, "__init__", a_thp_left)
    ph = judged(load("touch_free_6.12_settled_on"))["phases"][-1]
    assert ph["drop_mib"] - ph["predicted_mib"] > 1.5 and ph["layout"]["matched"] == ph["layout"]["real"] - 1


# --- faults on every node, and the drains the faults cannot rule out -----------------------

def test_faults_bound_to_each_node_settle_that_cpus_lists_on_both_nodes(monkeypatch):
    # e2emem binds one part of its fault area per node: CPU 0's node-1 list gets its faults
    # too, so only the DMA list (no fault reaches it) can still drain whole, and vmstat's one
    # batch from the remote list: both in the pcp_residue term's runs
    r = load("numa2_faults_6.1_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    assert (pre.fault_nodes, pre.cpu_node) == ((0, 1), 0)
    rel = R.run_release(pre)
    assert R.settled_release(pre, rel)
    assert rel.free_high_lists == ("0/DMA",) and rel.remote_lists == ("1/DMA32",)
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    res = next(t for t in ph["terms"] if t["name"] == "pcp_residue")
    # With the unmap's page tables on node 0's DMA32 (release_tables_split) this run's count
    # ends 32 pages over a flush: the run with 2 batches fewer makes one flush less (4 THPs,
    # 8 MiB), which is what the guest did (941.7 against 948.0; its DMA list held 66 pages more
    # than the model's: tables there)
    assert res["lo_mib"] >= -8.0 and res["hi_mib"] <= 4.0, res
    # CPU 0's node-1 list held 515 pages, and the capture saw a flagless THP there (333824):
    # the model puts it on that list (it had taken a batch of the 515 for the order-0 list and
    # found too few left for a THP), the first THP a flush takes, so the release's 278528 stays,
    # as in the guest. The layout is then put down to pcp_residue's runs (459/461/458).
    assert pre.flagless_thps == (217600, 333824) and pre.zones[-1].pcp(0).count == 515
    assert ph["layout"]["differences"] == {"pcp_residue": 3} and ph["layout"]["unexplained"] == []
    # planted: that THP not seen: the layout outside pcp_residue's runs
    seen = Scan.flagless_blocks
    monkeypatch.setattr(Scan, "flagless_blocks", lambda self, order: tuple(h for h in seen(self, order) if h != 333824))
    out = judged(r)["phases"][-1]
    assert out["verdict"] == "outside" and out["layout"]["unexplained"], out["layout"]
    # planted: the faults taken as unbound (all on CPU 0's node): node 1's list keeps
    # free_factor 5 and the term must cover it drained whole
    unbound = dataclasses.replace(pre, fault_nodes=())
    assert "1/DMA32" in R.run_release(unbound).free_high_lists
    for ph in judged(r, ReportingParams(capacity=16))["phases"]:
        assert ph["verdict"] == "outside"


def test_a_list_the_faults_did_not_reach_stays_in_the_term(monkeypatch):
    # 3 GiB: the faults take Normal, CPU 0's DMA32 list keeps free_factor 5, so the term runs
    # the model with that list drained whole too. This run's 2 blocks and 7.8 MiB of free memory
    # over the model were first put down to such a drain; they were the unmap's page tables,
    # left out of a release over two zones: with them on the zones its THPs came from the
    # centre is exact
    r = load("normal_zone_free_high_6.1_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    rel = R.run_release(pre)
    assert R.settled_release(pre, rel) and rel.free_high_lists == ("0/DMA32",)
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    assert (ph["layout"]["real"], ph["layout"]["predicted"], ph["layout"]["matched"]) == (709, 709, 709)
    assert abs(ph["drop_mib"] - ph["predicted_mib"]) <= 0.5
    fm = ph["free_memory"]
    assert abs(fm["measured_mib"] - fm["expected_mib"]) <= 0.5, fm
    # planted: the tables left out (the model before): the centre 8 MiB and 2 blocks off
    monkeypatch.setattr(R, "release_tables_split", lambda *a: ({}, None))
    out = judged(r)["phases"][-1]
    assert out["free_memory"]["expected_mib"] <= fm["measured_mib"] - 7.0
    assert out["layout"]["matched"] <= 707


def test_the_unmaps_page_tables_go_where_its_thps_came_from(monkeypatch):
    # a fresh-clone suite's 2-node run: with the tables left out, the guest's free memory read
    # 1836.2 against 1828.2 [1825.1, 1835.6] (outside) and 4 blocks were missing
    r = load("numa2_tables_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    fm = ph["free_memory"]
    assert abs(fm["measured_mib"] - fm["expected_mib"]) <= 0.1, fm
    assert (ph["layout"]["real"], ph["layout"]["matched"]) == (462, 462)
    monkeypatch.setattr(R, "release_tables_split", lambda *a: ({}, None))
    out = judged(r)["phases"][-1]
    assert out["verdict"] == "outside" and out["free_memory"]["verdict"] == "outside", out["judgement"]


@pytest.mark.parametrize("name, width", [("numa2_tables_6.1_on", 15.5), ("numa2_traced_6.1_on", 13.2)])
def test_a_thp_seen_on_each_nodes_list_is_placed_on_that_zones_list(monkeypatch, name, width):
    # two nodes: the touch left a THP on CPU 0's list of each node's DMA32 zone, and the capture
    # saw one flagless aligned block in each zone. Each is placed on its zone's list (it was
    # placed only where one block was seen in the whole guest): the layout block for block
    ph = judged(load(name))["phases"][-1]
    lay = ph["layout"]
    assert ph["verdict"] == "within" and lay["real"] == lay["predicted"] == lay["matched"], lay
    assert lay["unplaced_predicted"] == 0 and round(ph["predicted_hi_mib"] - ph["predicted_lo_mib"], 1) <= width
    # planted: the rule before (a head only when the guest showed one): both THPs of unknown
    # position, 2 real blocks unmatched
    real = R.PcpList.__init__

    def one_head_only(self, zone, pcp, version, *a, thp_heads=None, thp_left=None, **kw):
        if thp_heads and len(thp_heads) > 1 and thp_left is None:
            thp_left, thp_heads = True, tuple(-1 for _ in thp_heads)
        real(self, zone, pcp, version, *a, thp_heads=thp_heads, thp_left=thp_left, **kw)
    monkeypatch.setattr(R.PcpList, "__init__", one_head_only)
    lay = judged(load(name))["phases"][-1]["layout"]
    assert lay["matched"] == lay["real"] - 2, lay


def test_the_release_flushes_are_the_kernels(monkeypatch):
    # kprobe on free_pcppages_bulk in the guest: every flush the release's frees set off, per
    # list in order, is the model's (131 of them; a model without the unmap's page tables made
    # one flush of 2016 fewer on node 0's DMA32, 4 THPs left on the list that the kernel freed)
    r = load("numa2_traced_6.1_on")
    trace = json.loads((DATA / "numa2_traced_6.1_on.trace.json").read_text())["flushes"]
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    zone_of_high = {zs.pcp(pre.cpu).high: zs.key for zs in pre.zones if zs.pcp(pre.cpu)}
    kernel: dict = {}
    for f in trace:
        if f["comm"].startswith("e2emem"):
            kernel.setdefault(zone_of_high[f["high"]], []).append(f["count"])
    model = {k: list(v) for k, v in R.run_release(pre).flushes.items() if v}
    assert sum(map(len, kernel.values())) == 131
    assert model == kernel
    assert judged(r)["phases"][-1]["verdict"] == "within"
    monkeypatch.setattr(R, "release_tables_split", lambda *a: ({}, None))
    left_out = {k: list(v) for k, v in R.run_release(pre).flushes.items() if v}
    assert len(left_out["0/DMA32"]) == len(kernel["0/DMA32"]) - 1


def test_our_frees_stay_on_our_cpus_own_node_and_vmstat_drains_a_batch_from_the_other():
    # 2 nodes, our commands on CPU 1 (node 1): their frees stay on CPU 1's node-1 list (vmstat
    # never drains a CPU's own node's lists), and vmstat drains one batch from its node-0 list
    r = load("numa2_tables_6.1_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    assert (pre.ours_cpu, pre.ours_node) == (1, 1)
    assert R.ours_frees_stay_on_lists(pre, (6, 1), 604) and R.ours_remote_batches(pre) == 63
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    frees = next(t for t in ph["terms"] if t["name"] == "guest_frees")
    assert frees["hi_mib"] <= 4.0, frees
    # what the guest did: once reporting was over CPU 1's node-0 count was one batch lower, its
    # node-1 count unchanged (zoneinfo in the captures before the release and once settled)
    counts = {}
    for name, cap in (("pre", ph["pre"]["capture"]), ("settled", ph["captures"]["settled"])):
        zi = Capture.from_json(cap).scan.zoneinfo
        counts[name] = {(z.node, z.zone): next(p.count for p in z.pagesets if p.cpu == 1) for z in zi
                        if z.populated and z.zone == "DMA32"}
    assert counts["pre"][(0, "DMA32")] - counts["settled"][(0, "DMA32")] == 63
    assert abs(counts["pre"][(1, "DMA32")] - counts["settled"][(1, "DMA32")]) < 63
    # planted: our node not known (as records before it): the term takes our 604 pages as frees
    unknown = copy.deepcopy(r)
    unknown["phases"][-1]["pre"].pop("ours_node")
    wide = next(t for t in judged(unknown)["phases"][-1]["terms"] if t["name"] == "guest_frees")
    assert wide["hi_mib"] >= frees["hi_mib"] + 4.0, wide


def test_blocks_the_model_did_not_predict_can_push_its_last_pass_to_one_more(monkeypatch):
    # a hint-migrate destination: the total within, but 2 order-9 blocks the model did not
    # predict took report slots of its one pass, whose budget ran out: 2 order-10 blocks (8 MiB)
    # came 2 s later, the first plateau 0.6 MiB under the low side
    # (the model before 2026-12-07, planted: a THP from before counted on both lists; counted
    # once, one of the two blocks is the model's, 205/204/204, and nothing is pushed)
    # (The term's runs with every THP-sized flagless block seen on the list are left out: this
    # destination saw ten, of which the drop says one was there, and with them the plateau's low
    # side is 14 MiB lower, so the planted error below is no longer caught on this run.)
    r = load("hint_destination_pushed_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within" and ph["predicted_lo_mib"] == 230.5
    _without_runs(monkeypatch, "thps_seen_all")
    ph = judged(r)["phases"][-1]
    assert (ph["layout"]["real"], ph["layout"]["matched"]) == (205, 204) and prediction.pushed_mib(ph) == 0.0
    _thp_pages_twice(monkeypatch)
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    assert (ph["layout"]["real"], ph["layout"]["matched"]) == (205, 203)
    assert prediction.pushed_mib(ph) == 8.0
    # pcp_residue's run with the pages of unknown list drained ahead of the THPs (4 THPs more
    # on the list: -6 MiB) now also holds that plateau; at the residue of the term's other runs
    # it is pushed_mib that does. Planted: neither, outside.
    _without_runs(monkeypatch, "elsewhere_before_thp", "thps_seen_all")
    assert judged(r)["phases"][-1]["verdict"] == "within"
    monkeypatch.setattr(prediction, "pushed_mib", lambda phase: 0.0)
    out = judged(r)["phases"][-1]
    assert out["verdict"] == "outside" and out["judgement"]["curve"], out["judgement"]


def test_a_figure_on_an_intervals_end_is_within_at_its_recorded_resolution(monkeypatch):
    # a settled booted release (stored) whose guest free memory equalled the model's to the
    # page, 230597 pages = 900.7695 MiB, recorded as 900.77 (to 0.01 MiB), read outside when its
    # interval's high side was the prediction itself
    r = load("boot_rounding_6.1_on")
    fm = judged(r)["phases"][-1]["free_memory"]
    assert fm["verdict"] == "within" and fm["measured_mib"] == 900.77 and fm["expected_mib"] == 900.77, fm
    on_the_end = prediction.FreeMemoryCheck(230597 / 256, fm["lo_mib"], 230597 / 256, 900.77, 5.0, ())
    assert on_the_end.verdict == "within"
    # the next recorded value above the end is over
    assert dataclasses.replace(on_the_end, measured_mib=900.78).verdict == "outside"
    # planted: compared as if recorded exactly
    monkeypatch.setattr(prediction, "FREE_RESOLUTION_MIB", 0.0)
    assert on_the_end.verdict == "outside"


def test_the_previous_releases_pages_still_on_the_lists_are_placed(monkeypatch):
    # fragment's free-rest: nothing was allocated since the punch, whose newest pages are still
    # on CPU 0's lists (flagless in the capture); the free-rest's flushes drain them first
    r = load("fragment_previous_6.1_on")
    rest = r["phases"][-1]
    pre, _ = prediction.pre_release_input(rest, r)
    assert not pre.pcp_taken and R.settled_release(pre, R.run_release(pre))
    known = sum(x.pages for x in pre.pcp_known)
    count = next(p.count for zs in pre.zones for p in zs.pcps if p.cpu == pre.cpu and zs.name == "DMA32")
    assert 0.9 * count <= known <= count, (known, count)
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    assert (ph["layout"]["real"], ph["layout"]["predicted"], ph["layout"]["matched"]) == (469, 469, 469)
    assert abs(ph["drop_mib"] - ph["predicted_mib"]) <= 0.5
    assert ph["predicted_hi_mib"] - ph["predicted_lo_mib"] <= 12.0
    # planted: the previous release's pages not placed (the model before): 12 MiB and 3 blocks short
    monkeypatch.setattr(prediction, "previous_on_lists", lambda *a: ())
    out = judged(r)["phases"][-1]
    assert out["predicted_mib"] <= ph["predicted_mib"] - 10.0 and out["layout"]["matched"] <= 466, out["layout"]


def test_the_thp_parity_run_is_what_keeps_this_booted_release_within(monkeypatch):
    # A booted release, the THP the touch left found before it (110080, free as an order-9
    # block after it, as the model drains it). Its guest free memory, 892.9, is 0.11 MiB over
    # the highest of the model's own runs (892.79, the count 126 pages lower). The free-memory
    # check takes the lowest residue of the term's runs, 2851 pages, which is the parity run's
    # (no THP on the list). That run's free total is the model's (the THP then stays on the
    # list), so the check is wider than any run gives. Without that run the statistic is over
    # the runs' room, as a suite read it (outside, before the vmstat_unfolded term). The run with the pages of unknown list drained ahead of the THPs
    # (PcpList._bulk: a traced integrity release drained 259 such pages so, and its guest free
    # memory read them over the model's run) now also keeps it within: without both, over.
    r = load("boot_frees_6.1_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    assert pre.flagless_thps == (110080,)
    ph = judged(r)["phases"][-1]
    # with the THP counted once on the lists its layout is exact and its drop 241.9 against 242.0
    assert ph["verdict"] == "within" and ph["layout"]["exact"] and ph["predicted_mib"] == 242.0
    # The model before 2026-12-07 (planted: that THP's pages counted on both lists) read 240.0,
    # one real block more, 47104/9, a THP of the release's own it kept on the list; the real
    # residue then its 3875 less 512, 3363, which only the parity run's end of the range (2851)
    # held. Without that run, not explained.
    _thp_pages_twice(monkeypatch)
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within" and ph["layout"]["differences"] == {"pcp_residue": 1}
    _without_runs(monkeypatch, "elsewhere_before_thp")
    assert judged(r)["phases"][-1]["verdict"] == "within"
    _without_runs(monkeypatch, "thp_left")
    out = judged(r)["phases"][-1]
    assert out["layout"]["unexplained"] == [[47104, 9]], out["layout"]
    both = ("thp_left", "elsewhere_before_thp")
    _without_runs(monkeypatch, *both)
    out = judged(r)["phases"][-1]
    # the statistic then over every other term's room, by less than the CPUs' differentials
    # can hold (vmstat_unfolded: 48 pages, 0.19 MiB): within only through that term
    fm = out["free_memory"]
    unfolded = next(t for t in fm["terms"] if t["name"] == "vmstat_unfolded")["hi_mib"]
    assert fm["hi_mib"] - unfolded + 0.05 < fm["measured_mib"] <= fm["hi_mib"], fm


# --- 6.12 free_count: the deposited tables and a THP's overshoot ---------------------------

def test_gather_free_count_counts_deposited_tables_halved_per_gather_batch():
    thps = lambda n: R.FreedPages(tuple(R.Run(i * 512, 512, True) for i in range(n)), 0)  # noqa: E731
    assert R.gather_free_count(thps(128)) == 124            # 8 -> 4 at the first batch page, + 120
    assert R.gather_free_count(thps(512)) == 4 + 504
    assert R.gather_free_count(R.FreedPages((R.Run(0, 4096),), 0)) == 0  # no THP, no table


def test_a_booted_6_12_release_flushes_five_thps_at_a_time():
    # Booted 6.12, 256 MiB (kprobe on free_pcppages_bulk): every flush of the release freed 2172
    # pages = the 124 deposited tables + 4 THPs past the cap of 2016, so 5 THPs a flush; the
    # model's 4 left 12 THPs on CPU 0's lists where the kernel left 8: 2 order-10 blocks and
    # 8 MiB of free memory under the real guest's in 3 of 5 such runs
    r = load("boot_free_count_6.12_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    assert R.settled_release(pre, R.run_release(pre))
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    lay = ph["layout"]
    assert lay["predicted"] == lay["matched"] == lay["real"] == 225
    assert abs(ph["free_memory"]["measured_mib"] - ph["free_memory"]["expected_mib"]) < 0.1
    assert ph["layout"]["residue_pages"] == 8 * 512


def test_a_6_12_model_without_the_tables_free_count_is_caught(monkeypatch):
    r = load("boot_free_count_6.12_on")
    monkeypatch.setattr(R, "gather_free_count", lambda freed: 0)
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "outside"
    assert ph["layout"]["real"] - ph["layout"]["predicted"] == 2


# --- our commands' frees stay on their CPU's lists (6.1) -------------------------------------

def test_our_frees_under_their_cpus_high_complete_no_block():
    # settled 6.1 run: CPU 1's DMA32 list held 2133 of 6985 pages; our captures and commands
    # free ~612 there, no flush, so only the idle rate's frees can complete a block
    r = load("touch_free_settled_6.1_on")
    pre, act = prediction.pre_release_input(r["phases"][-1], r)
    assert R.ours_frees_stay_on_lists(pre, (6, 1), act.ours())
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    frees = next(t for t in ph["terms"] if t["name"] == "guest_frees")
    assert frees["hi_mib"] == 0.0 and "stay on CPU 1" in frees["explanation"]
    # that CPU's list near its high: a flush can give them back, and the term has them again
    dma32 = pre.zones[-1]
    near = dataclasses.replace(dma32, pcps=tuple(dataclasses.replace(q, count=q.high - 100) if q.cpu == 1 else q
                                                 for q in dma32.pcps))
    crowded = dataclasses.replace(pre, zones=pre.zones[:-1] + (near,))
    assert not R.ours_frees_stay_on_lists(crowded, (6, 1), act.ours())
    assert not R.ours_frees_stay_on_lists(pre, (6, 12), act.ours())   # 6.12: free_high once free_count >= batch


def test_6_12_high_min_is_the_zones_low_watermark_over_its_cpus(monkeypatch):
    # A restored 6.12 release, traced (kprobe on free_pcppages_bulk): the release's 24 flushes
    # of 2172 pages are the model's; then decay_pcp_high brought CPU 0's list from 8571 pages
    # down to the kernel's high_min, 6928 = zone_highsize's low watermark 13857 over 2 CPUs.
    # zoneinfo showed 8671 and 8753 as the CPUs' highs; the model took the lower for high_min,
    # left 1642 pages on the list and read the guest's free memory 6.2 MiB under.
    r = load("restore_high_min_6.12_on")
    trace = json.loads((DATA / "restore_high_min_6.12_on.trace.json").read_text())["flushes"]
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    dma32 = next(zs for zs in pre.zones if zs.name == "DMA32")
    assert min(q.high for q in dma32.pcps) == 8671
    assert dma32.high_min(1) == trace[-1]["high_min"] == 6928
    rel = R.run_release(pre)
    assert list(rel.flushes["0/DMA32"]) == [f["count"] for f in trace if f["caller"] == "free_unref_page_commit"][:24]
    assert {f["caller"] for f in trace[24:-2]} == {"decay_pcp_high"} and trace[-3]["pcp_count"] - trace[-3]["count"] == 6928
    ph = judged(r)["phases"][-1]
    fm = ph["free_memory"]
    assert ph["verdict"] == "within" and abs(fm["measured_mib"] - fm["expected_mib"]) < 0.3, fm
    # planted: the lowest high read taken for high_min (the model before): 6 MiB under
    monkeypatch.setattr(R.ZoneState, "high_min", lambda self, nodes: min(q.high for q in self.pcps))
    fm = judged(r)["phases"][-1]["free_memory"]
    assert fm["measured_mib"] - fm["expected_mib"] > 6.0, fm


def test_a_release_after_e2emems_decay_sync_has_no_decay_step_inside(monkeypatch):
    # 6.12: before the unmap e2emem waited for vmstat's decay step to lower CPU 0's highs
    # (`sync`), so the next step is a second away and none falls inside the release: the
    # settled term has no run with one. 1011.0 vs 1008.0 [1002.4, 1017.6], block for block, the
    # guest's free memory within 0.2 MiB.
    r = load("touch_free_6.12_synced_on")
    assert PreRecord.from_json(r["phases"][-1]["pre"]).decay_synced
    ph = judged(r)["phases"][-1]
    res = next(t for t in ph["terms"] if t["name"] == "pcp_residue")["explanation"]
    assert ph["verdict"] == "within" and "decay step" not in res, res
    width = ph["predicted_hi_mib"] - ph["predicted_lo_mib"]
    assert width <= 0.02 * ph["predicted_mib"], width                      # the issue's goal
    assert ph["layout"]["matched"] == ph["layout"]["real"] == ph["layout"]["predicted"]
    # unsynced, the same record has the two runs with a step inside, and is wider
    r["phases"][-1]["pre"].pop("decay_synced")
    wide = judged(r)["phases"][-1]
    assert "a decay step inside it" in next(t for t in wide["terms"] if t["name"] == "pcp_residue")["explanation"]
    assert wide["predicted_hi_mib"] - wide["predicted_lo_mib"] > width
    # planted: the reporting capacity halved reads outside
    r["phases"][-1]["pre"]["decay_synced"] = True
    assert judged(r, ReportingParams(capacity=16))["phases"][-1]["verdict"] == "outside"


def test_qemus_own_growth_during_an_integrity_cycle(monkeypatch):
    # A fresh-clone suite's integrity cycle 9: the guest side exact (410/410/410 blocks, free
    # memory exact, the RAM mapping's drop 236.0 as predicted), the process RSS drop 231.6,
    # as QEMU's own memory (RSS less RAM) rose 4.3 MiB during the phase (58.3 -> 62.6; in
    # the cycles before 0.2, 0.1, 0.2, 0.3, 0.8, 0.9, 2.0, 2.0). Its qemu_own_growth term read
    # 0.0: the own memory had risen 2.0 during cycle 8's phase (56.3 -> 58.3), at its release,
    # so a stretch measured from that release saw none. Outside at the recorded 0.0, within at
    # 2.0, what the term now takes (Run.last_own_rise: the previous phase's rise). The 2.3 MiB
    # beyond sit in the guest allocations' 4 MiB here: not explained.
    r = load("integrity_qemu_growth_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["ram_drop_mib"] == ph["predicted_mib"] == 236.0 and ph["layout"]["matched"] == ph["layout"]["real"]
    assert ph["verdict"] == "outside" and ph["pre"]["qemu_own_growth_mib"] == 0.0
    r["phases"][-1]["pre"]["qemu_own_growth_mib"] = 2.0
    assert judged(r)["phases"][-1]["verdict"] == "within"


def test_a_refill_takes_the_smallest_blocks_first_and_the_next_fault_takes_the_first_taken():
    """rmqueue_bulk: batch pages, each the low page of the smallest free movable block (the split
    halves go back at the list heads), added at the list's tail; the next allocation takes the
    first taken, a flush frees the last taken first. 6.12 lifts high by that batch."""
    z, pl = _zone_with_free_pcp((6, 12))
    for pfn, order in ((9000, 0), (9004, 2), (9016, 3), (12288, 9)):
        z.add_free_block(pfn, order, R.MOVABLE)
    free_before = z.free_pages
    high = pl.high
    pl.allocate(1, refill=True)
    # 1 + 4 + 8 pages from the three small blocks, 50 from the order-9 block's low end; one allocated
    assert pl.order0 == [[12288, 50, True, True], [9016, 8, True, True], [9004, 4, True, True]]
    assert pl.count == 62 and pl.high == high + 63 and z.free_pages == free_before - 63
    pl._bulk(10, thp_first=False)                        # a flush: the last taken first
    assert pl.order0[0] == [12288, 40, True, True]


def test_faults_after_a_release_at_high_min_take_pages_the_lists_held(monkeypatch):
    # 6.12, a restored 1 GiB guest, 256 MiB touched and released 6 s later (a scratch script,
    # so that the highs had decayed to high_min, 6928, as a booted guest's are: the suite's
    # booted 6.12 case read them so). The model's flushes leave its order-0 list empty; the six
    # faults after the unmap took pages the lists held from before (the model's run): 252.0
    # predicted, 251.9 measured, 228/228/228 block by block. Before, the model stopped at the
    # empty list and took the coarse term: 18 MiB of pcp_residue where it is now 6.
    r = load("restore_at_high_min_6.12_on")
    assert r["phases"][-1]["pre"]["pcp_at_release"][1][3] == 6928
    ph = judged(r)["phases"][-1]
    lay = ph["layout"]
    assert ph["verdict"] == "within" and ph["predicted_mib"] == 252.0 and lay["exact"], lay
    res = next(t for t in ph["terms"] if t["name"] == "pcp_residue")
    # the count's high end (-4 MiB) and the refill (-2) together: -6, the low end alone +2
    assert "the faults' refill" in res["explanation"] and (res["lo_mib"], res["hi_mib"]) == (-6.0, 2.0), res
    # planted: the faults refill from the buddy lists instead: the refill splits the order-9
    # block at 12800, which the capture after the release shows free: one block short
    allocate = R.PcpList.allocate
    monkeypatch.setattr(R.PcpList, "allocate", lambda self, n, refill=False: allocate(self, n, refill=True))
    ph = judged(r)["phases"][-1]
    assert ph["predicted_mib"] == 250.0 and ph["layout"]["first_only_real"] == [[12800, 9]], ph["layout"]


def test_pages_of_unknown_list_drained_ahead_of_the_thps_keep_the_free_memory_within(monkeypatch):
    # A restored 6.1 integrity run, two cycles, traced (kprobe on free_pcppages_bulk and
    # kmem/mm_page_pcpu_drain: tracefs took 16 MiB of the guest's memory). Cycle 1's flushes are
    # the model's to the count (34, 60417 pages asked, pcp->count 7382 at each against the
    # model's 7383), but its last, set off by an order-0 free, took 183 order-0 movable pages,
    # then 259 pages from before the release on the reclaimable and order 1-3 lists, then 4
    # THPs. The model takes its pages of unknown list last: the guest's free memory read
    # 1618.96 against 1618.19, 0.77 MiB (197 pages) over, outside its interval in three runs
    # of the same saved guest. The run with those pages ahead of the THPs bounds them.
    r = load("integrity_traced_6.1_on")
    ph = judged(r)["phases"][0]
    assert ph["verdict"] == "within" and ph["layout"]["exact"], (ph["judgement"], ph["layout"])
    fm = ph["free_memory"]
    assert fm["expected_mib"] < fm["measured_mib"] - 0.5 and fm["verdict"] == "within", fm
    # which THPs stay: here the model's run's (the layout exact), but a hinted migration's
    # destination kept 2 more (test_every_block_only_one_side_has...): the run with every
    # page of unknown list ahead of the THPs keeps 4 more, the drop's low side
    res = next(t for t in ph["terms"] if t["name"] == "pcp_residue")
    assert (res["lo_mib"], res["hi_mib"]) == (-8.0, 0.0), res
    # planted: without that run (the model before), outside
    _without_runs(monkeypatch, "elsewhere_before_thp")
    out = judged(r)["phases"][0]
    assert out["free_memory"]["verdict"] == "outside", out["free_memory"]


def test_a_release_after_a_punch_can_drain_the_pages_of_unknown_position_last(monkeypatch):
    # fragment's free-rest after the punch, from a suite run that failed (992.0 vs 982.0 in
    # [975.9, 986.0]; its phases from the run folder). The lists were not read whole after the
    # punch (pcp_taken false), so the model puts their 1510 pages of unknown position at the
    # order-0 movable list's oldest end, drained first. A traced run of the same saved guest
    # shows pages from before on the unmovable order-0 list (783), which the round robin from
    # the movable list reaches last, while the release's own pages went. The run with them
    # last frees three more of the release's blocks: 472 blocks, the real count.
    r = load("fragment_unknown_last_6.1_on")
    ph = judged(r)["phases"][1]
    assert ph["phase"] == "free-rest" and ph["verdict"] == "within", ph["judgement"]
    assert ph["layout"]["real"] == 472 and ph["layout"]["predicted"] == 469
    pre, _ = prediction.pre_release_input(ph, r)
    last = R.run_release(pre, unknown_last=True)
    assert sum(1 for z in last.machine.zones for _, o, _, _ in z.free_blocks() if o >= 9) == 472
    # planted: without that run (the model before), outside
    _without_runs(monkeypatch, "unknown_last")
    assert judged(r)["phases"][1]["verdict"] == "outside"


def test_a_punch_is_one_munmap_per_hole_each_halving_free_factor(monkeypatch):
    # fragment's punch, traced (kprobe on free_pcppages_bulk): e2emem unmaps 512 holes of
    # 1 MiB, and each munmap's gather allocates its batch page before it frees, which halves
    # free_factor (rmqueue_pcplist): the flushes ask 63, 126, 252, 126, 63 ... pages, 791 of
    # them. The model cuts the release at its holes (PreRecord.unmap_chunk, from `punch`'s
    # GAP): 747 flushes asking the kernel's 126063 pages in all; the 44 more are other
    # allocations of the VMA splits (slab pages), not modelled. The guest's free memory after
    # the punch reads 1256.14 against the model's 1256.14.
    r = load("fragment_punch_traced_6.1_on")
    kernel = json.loads((DATA / "fragment_punch_traced_6.1_on.trace.json").read_text())["counts"]
    pre, _ = prediction.pre_release_input(r["phases"][0], r)
    assert pre.unmap_chunk == 256
    flushes = R.run_release(pre).flushes["0/DMA32"]
    assert sum(flushes) == sum(kernel) == 126063 and list(flushes[:4]) == kernel[:4]
    ph = judged(r)["phases"][0]
    fm = ph["free_memory"]
    assert ph["verdict"] == "within" and abs(fm["measured_mib"] - fm["expected_mib"]) < 0.1, fm
    # planted: the punch as one munmap (the model before): 67 flushes, 3.4 MiB over
    one = dataclasses.replace(pre, unmap_chunk=0)
    assert len(R.run_release(one).flushes["0/DMA32"]) == 67
    real = prediction.pre_release_input

    def one_munmap(mi, facts):
        p, a = real(mi, facts)
        return dataclasses.replace(p, unmap_chunk=0), a
    monkeypatch.setattr(prediction, "pre_release_input", one_munmap)
    fm = judged(r)["phases"][0]["free_memory"]
    assert fm["expected_mib"] - fm["measured_mib"] > 3.0, fm


def test_the_sync_age_is_kept_in_the_record():
    # e2emem's `free` says how long after the poll before the sync's detection its unmap ended
    # (sync_age_ms); the record keeps it, so a run that read synced can be checked afterwards
    r = load("touch_free_6.12_synced_on")
    d = dict(r["phases"][-1]["pre"])
    assert PreRecord.from_json(d).sync_age_ms is None          # recorded before the field
    d["sync_age_ms"] = 75
    rec = PreRecord.from_json(d)
    assert rec.sync_age_ms == 75 and PreRecord.from_json(rec.to_json()).sync_age_ms == 75


def test_6_12_capture_right_after_the_release_is_the_model_before_the_decay_tick_its_highs_show(monkeypatch):
    # The capture reads zoneinfo as its scan begins: CPU 0's high is the model's before any of
    # vmstat's decay ticks (restored 6.12 x 10.0, 1 GiB, untraced: 471 blocks, as the model's
    # then; 8 such runs read 469-471 exact), or after one (a stored run whose capture came a
    # tick later). Compared with the model's layout once decay was done, the first read
    # 471/476/470 (the 8 runs: 474-478 predicted, 468-470 matched).
    ph = judged(load("capture_at_tick0_6.12_on"))["phases"][-1]
    lay = ph["layout"]
    assert (lay["real"], lay["predicted"], lay["matched"], lay["decay_ticks"]) == (471, 471, 471, 0)
    ph = judged(load("touch_free_6.12_pcp_on"))["phases"][-1]
    assert ph["layout"]["decay_ticks"] == 1 and ph["layout"]["exact"]
    # planted: decay lowering high by two eighths a tick, not one: no tick of the model's has
    # the capture's high, and its layout once decay is done is not the capture's
    step = R.PcpList.decay_step

    def faster(self):
        self.high -= self.high >> 3
        step(self)
    monkeypatch.setattr(R.PcpList, "decay_step", faster)
    lay = judged(load("touch_free_6.12_pcp_on"))["phases"][-1]["layout"]
    assert lay["decay_ticks"] is None and not lay["exact"], lay


def test_6_12_blocks_decay_forms_after_the_capture_can_miss_the_passes_the_model_gives_them(monkeypatch):
    # Restored 6.12 x 10.0, 1 GiB, traced (kprobes with a stack on free_pcppages_bulk slow
    # the guest; scratch): CPU 0's decay ticks 1.1, 2.9 and 3.9 s after the release drained
    # order-0 pages, then THPs. The model's ticks form 9 blocks (36 MiB) after the capture; its
    # pass schedule has them all from t = 0. The second pass left the drop at 491.9 MiB, 12 MiB
    # under that plateau (504.0) and 1.3 MiB under its low side with the residue's 0 MiB as
    # the decay's slack. The model's passes without those blocks (curve_before_decay) read 500.0
    # there: each plateau before the last lies between the two curves. (The other 8 MiB: the
    # unheld blocks' slots and the pcp terms; 4 of 12 traced runs needed this, none of 8
    # untraced ones.)
    ph = judged(load("decay_late_blocks_6.12_on"))["phases"][-1]
    assert ph["layout"]["decay_late_blocks"] == 9 and ph["layout"]["decay_late_mib"] == 36.0
    floor = dict(map(tuple, ph["model"]["inputs"]["curve_before_decay"]))
    assert floor[4.015] == 500.0 and dict(map(tuple, ph["predicted_curve"]))[4.015] == 504.0
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    # The 2 blocks pcp_unknown_pages can form (held or not) each take a report slot of a 4 MiB
    # block (formed_blocks_mib: 8 MiB, where the term's own 2 MiB were counted before), which
    # alone also holds this plateau now. Planted: no such curve and the term's own MiB as the
    # slack: outside
    out = copy.deepcopy(ph)
    out["model"]["inputs"]["curve_before_decay"] = None
    assert prediction.formed_blocks_mib(out) == 8.0 and prediction.curve_mismatches(out) == []
    monkeypatch.setattr(prediction, "formed_blocks_mib", lambda phase: 2.0)
    assert prediction.curve_mismatches(ph) == []
    assert any("491.9" in f for f in prediction.curve_mismatches(out)), prediction.curve_mismatches(out)


def test_6_12_a_plateau_with_none_of_the_decay_blocks_can_be_the_higher_one():
    # Restored 6.12 x 10.0, 1 GiB (3 of 5 runs on one machine, and a CI run): the first pass
    # gave back 247.8 MiB, 7.8 over the predicted plateau (240.0, the decay's 2 blocks at the
    # release taking report slots of 4 MiB blocks) and under the plateau with none of them
    # (curve_before_decay: 248.0). The total (1015.4 of 1016.0) and the layout (477 of 477)
    # within: each plateau before the last lies between the two curves, either above.
    ph = judged(load("decay_first_pass_above_6.12_on"))["phases"][-1]
    assert ph["layout"]["decay_late_blocks"] == 2 and ph["layout"]["exact"]
    other = dict(map(tuple, ph["model"]["inputs"]["curve_before_decay"]))
    assert other[2.005] == 248.0 and dict(map(tuple, ph["predicted_curve"]))[2.005] == 240.0
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    # planted: the passes without the decay's blocks taken as the predicted ones (the bound
    # before this change): the first plateau outside, above
    out = copy.deepcopy(ph)
    out["model"]["inputs"]["curve_before_decay"] = out["predicted_curve"]
    assert any("247.8" in f for f in prediction.curve_mismatches(out)), prediction.curve_mismatches(out)
    # planted: the first plateau 8.1 MiB more than measured (above both curves), or the
    # drop 8.1 MiB later: outside
    for shift in (-8.1, 0.0):
        out = copy.deepcopy(ph)
        out["samples"] = [[t, rss + shift * (2.1 < t < 4.0), *rest] for t, rss, *rest in out["samples"]]
        if not shift:
            out["samples"] = [[t + 0.8 * (2.0 < t < 4.2), *rest] for t, *rest in out["samples"]]
        assert prediction.curve_mismatches(out), shift


def test_6_12_another_cpus_list_near_its_high_can_flush_what_it_held(monkeypatch):
    # 1 of 10 runs of the 6.12 x 10.0 case with one saved guest: CPU 0's lists ended as the
    # model's (4 THPs, 2048 pages; 471/471/471 blocks), yet the guest's free memory read 7.7
    # MiB over. CPU 1 (our commands') held 6559 pages of high 6985: 426 frees there reach high,
    # and nr_pcp_free then flushes free_count, up to batch << 5 plus a THP's pages less one,
    # of its oldest pages. The settled capture's own zoneinfo summed to the model's free pages
    # (1908.91 MiB) with CPU 1 still at 6557; the statistic 0.6 s later read 7.7 MiB more: the
    # capture's own frees there (inferred). In twelve traced runs CPU 1 held about 1885: no
    # flush within reach.
    # The same pages can complete blocks (the drop's pcp_flush: the regions closest to whole
    # whose missing pages were flagless, 2 MiB ones, beyond those pcp_unknown_pages takes:
    # 4 MiB here, and 6 that term; that run's drop was within without it, 1019.1 against 1016.0).
    ph = judged(load("other_cpu_flush_6.12_on"))["phases"][-1]
    flush = next(t for t in ph["free_memory"]["terms"] if t["name"] == "pcp_flush")
    assert "list 426 pages under its high" in flush["explanation"] and flush["hi_mib"] == round(2101 / 256, 2)
    assert next(t for t in ph["terms"] if t["name"] == "pcp_flush")["hi_mib"] == 4.0
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    quiet = judged(load("decay_late_blocks_6.12_on"))["phases"][-1]
    assert next(t for t in quiet["free_memory"]["terms"] if t["name"] == "pcp_flush")["hi_mib"] == 0.0
    assert next(t for t in quiet["terms"] if t["name"] == "pcp_flush")["hi_mib"] == 0.0
    # planted: no flush of another CPU's list (the model's list of them, which the free-memory
    # check reads too, empty): outside
    monkeypatch.setattr(R, "other_lists", lambda *a: ())
    out = judged(load("other_cpu_flush_6.12_on"))["phases"][-1]
    assert out["free_memory"]["verdict"] == "outside", out["free_memory"]


def test_the_unmaps_page_tables_can_be_the_pieces_its_drains_complete():
    # Traced (kmem/mm_page_pcpu_drain) 6.12 x 10.0 runs on this saved guest: region 33280-33791
    # drained from CPU 0 whole, as order-0 pages, at the second decay tick. Before the release
    # 442 of its pages were flagged (the run 33255+467, most likely the 257 THPs' deposited
    # tables and the gather's, allocated one per fault) and 70 flagless. This capture is e2epfn 2,
    # which has no page-table class: the run is named a page table here as e2epfn 3 would.
    r = load("decay_late_blocks_6.12_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    assert pre.page_table_runs is None and ("A", 33255, 467) in Capture.from_json(
        prediction.model_input(r["phases"][-1]).pre.capture).scan.runs

    def unknown_hi(p):
        return next(t for t in R.predict_release(p, noise_mib=0.0)[0].terms if t.name == "pcp_unknown_pages").hi_mib
    # 1222 pages of unknown position: 408 complete region 284672's (2 MiB held), 512 the
    # tables' region (2 MiB held): 4 MiB, which covers the run's 3.7 MiB over the model
    assert unknown_hi(pre) == 2.0
    assert unknown_hi(dataclasses.replace(pre, page_table_runs=((33255, 467),))) == 4.0


def test_of_regions_equally_close_to_whole_the_bound_takes_the_held_one(monkeypatch):
    # the tables' region and region 21 (512 flagless pages the host does not hold) both lack
    # 512 pages; 814 pages are left after region 284672: the upper bound takes the held one
    r = load("decay_late_blocks_6.12_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    pre = dataclasses.replace(pre, page_table_runs=((33255, 467),))

    def unknown_hi():
        return next(t for t in R.predict_release(pre, noise_mib=0.0)[0].terms if t.name == "pcp_unknown_pages").hi_mib
    assert unknown_hi() == 4.0
    # planted: closest to whole alone, as before: region 21 comes first and the bound is 2 MiB,
    # under the run's 3.7 MiB excess
    monkeypatch.setattr(R, "closest_first", lambda f: f[0])
    assert unknown_hi() == 2.0


def test_a_version_3_capture_shows_the_page_tables_the_unmap_frees():
    # The README's run on e2epfn 3 (6.1): 561 page-table pages (class T) before the release, of
    # which the unmap frees its 511 THPs' deposited tables and one PTE table (pt=1)
    r = load("readme_tables_6.1_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    thps = sum(u.pages for u in pre.unmapped if u.huge) >> 9
    assert (thps, pre.page_tables) == (511, 1)
    assert sum(n for _, n in pre.page_table_runs) == 561 >= thps + pre.page_tables


def test_every_block_only_one_side_has_is_put_down_to_a_term(monkeypatch):
    # The same run. With a THP from before the release counted twice (the model before
    # 2026-12-07, planted) one real block more right after the release (476/475/475), 257024/9,
    # one of the release's own THPs that model kept on CPU 0's list: the real residue is then its
    # 3878 less 512, inside pcp_residue's runs (2854-4004). Counted once, the layout is exact
    # and the drop's prediction the measured one to 0.3 MiB.
    r = load("readme_tables_6.1_on")
    ph = judged(r)["phases"][-1]
    lay = ph["layout"]
    assert (lay["real"], lay["predicted"], lay["matched"]) == (476, 476, 476) and ph["verdict"] == "within"
    assert (ph["drop_mib"], ph["predicted_mib"]) == (1009.7, 1010.0)
    # the idle rate's 80 frees (8 pages/s over 10 s) are the missing pages of no region, and a
    # block of their own takes 512: guest_frees adds nothing (2 MiB when it rounded up to one)
    assert next(t for t in ph["terms"] if t["name"] == "guest_frees")["hi_mib"] == 0.0
    _thp_pages_twice(monkeypatch)
    ph = judged(r)["phases"][-1]
    lay = ph["layout"]
    assert (lay["real"], lay["predicted"], lay["matched"]) == (476, 475, 475) and ph["predicted_mib"] == 1008.0
    assert lay["first_only_real"] == [[257024, 9]] and lay["differences"] == {"pcp_residue": 1}
    assert lay["unexplained"] == [] and ph["verdict"] == "within"
    # planted: the term's range without its runs (the model's residue alone): not explained
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    layout = R.predict_release(pre, noise_mib=0.0)[2]
    real = [(b.head, b.order) for b in Capture.from_json(r["phases"][-1]["captures"]["freed"]).blocks]
    check = R.LayoutCheck(9, 475, 476, 475, {}, (), ((257024, 9),))
    assert R.layout_differences(check, layout, real, pre, 2854, 4004) == ({"pcp_residue": 1}, ())
    assert R.layout_differences(check, layout, real, pre, 3878, 3878) == ({"pcp_residue": 1}, ((257024, 9),))
    # a block of flagless pages would be pcp_unknown_pages', of others' pages guest_frees'
    flagless = dataclasses.replace(pre, unmapped=(), flagless=((257024, 512),))
    assert R.layout_differences(check, layout, real, flagless, 0, 0)[0] == {"pcp_unknown_pages": 1}
    assert R.layout_differences(check, layout, real, dataclasses.replace(pre, unmapped=()), 0, 0)[0] == \
        {"guest_frees": 1}
    # one term per block: half flagless, half others is a free's (it was counted under both,
    # and layout_beyond then took it out of both allowances)
    half = dataclasses.replace(pre, unmapped=(), flagless=((257024, 256),))
    assert R.layout_differences(check, layout, real, half, 0, 0)[0] == {"guest_frees": 1}
    assert R.layout_beyond({"guest_frees": 1}, {"guest_frees": 1}) == ()


def test_a_destination_release_kept_thps_only_the_run_with_unknown_pages_first_allows(monkeypatch):
    # A hinted migration's destination release (6.1, QEMU 10.0, a suite run): the drop within
    # (243.9 in [242.6, 264.0] then), but right after the release two of the release's THPs
    # the model had drained were still on CPU 0's list (124416 and 124928: predicted 123904/10
    # and 124928/9, real 123904/9). The real residue, ~3015 pages (5 THPs and 455 order-0
    # pages), was over every run of the term then (962-1986), and the drop was 4.1 MiB under
    # the model's, inside only through guest_allocations and qemu_own_growth. The run with
    # the pages of unknown list drained ahead of the THPs keeps 3 THPs more (3522).
    r = load("hint_destination_residue_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within" and ph["layout"]["unexplained"] == [], ph["judgement"]
    # (836 at the low end: the count's low end with the other parity, run together; 5114 at the
    # high: every THP-sized flagless block seen, nine, on the list as far as its count holds)
    assert "836-5114 pages" in next(t for t in ph["terms"] if t["name"] == "pcp_residue")["explanation"]
    _without_runs(monkeypatch, "thps_seen_all")
    assert "836-3522 pages" in next(t for t in judged(r)["phases"][-1]["terms"]
                                    if t["name"] == "pcp_residue")["explanation"]
    # planted: that run left out of the term, as before: the layout not explained
    _without_runs(monkeypatch, "elsewhere_before_thp", "thps_seen_all")
    out = judged(r)["phases"][-1]
    assert out["layout"]["unexplained"] == [[123904, 10], [124928, 10]], out["layout"]


def test_a_predicted_block_inside_a_larger_real_one_is_not_a_difference_of_its_own():
    # A suite's drop_caches release (6.1): the model predicted 42496/9, the guest had it merged
    # with 41984/9 (pages flagless before the release, drained) into 41984/10. The drop_caches
    # release leaves none of its pages on the lists (free_high drains them whole): counting the
    # predicted block as the release's pages still on a list read the phase outside.
    r = load("page_cache_merged_6.1_on")
    ph = judged(r)["phases"][-1]
    lay = ph["layout"]
    assert lay["first_only_predicted"] == [[42496, 9]] and [41984, 10] in lay["first_only_real"]
    assert lay["differences"] == {"pcp_unknown_pages": 3} and ph["verdict"] == "within", ph["judgement"]
    # the same predicted block with no real block around it: the release's pages on a list,
    # which the drain leaves none of: not explained
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    layout = R.predict_release(pre, noise_mib=0.0)[2]
    alone = R.LayoutCheck(9, 478, 480, 477, {}, ((42496, 9),), ((522240, 10), (523264, 9)))
    assert R.layout_differences(alone, layout, [], pre, 0, 0)[1] == ((42496, 9),)


def test_blocks_the_per_cpu_drains_form_can_each_take_a_slot_of_a_top_order_block(monkeypatch):
    # A suite's restored 6.12 x 10.0 run: the layout right after the release exact (475), the
    # total within (1003.7 in [994.1, 1012.0]), but its second and third passes gave back 6 MiB
    # less than the model's, its last 16 more: blocks formed after the capture sat in those
    # passes' sg lists (lowest order first) where 4 MiB blocks would have. pcp_unknown_pages
    # can complete 5 regions (3 the host holds: its +4 MiB): each block can displace a 4 MiB
    # block, 20 MiB of slack
    r = load("late_slots_6.12_on")
    ph = judged(r)["phases"][-1]
    assert ph["layout"]["exact"] and prediction.formed_blocks_mib(ph) == 20.0
    assert ph["model"]["inputs"]["formed_blocks"] == 5
    assert ph["verdict"] == "within", ph["judgement"]["failures"]
    # planted: the blocks' own MiB (4) as the slack, as before: the third plateau 2.4 MiB under
    monkeypatch.setattr(prediction, "formed_blocks_mib", lambda phase: 4.0)
    bad = prediction.curve_mismatches(ph)
    assert any("751.7" in f and "754.1" in f for f in bad), bad


def test_a_predicted_block_partly_taken_by_an_allocation_is_not_a_kept_thp():
    # A suite's 3 GiB release (6.1, DMA32 and Normal): the model predicted 1058304/9 free; the
    # guest had all of it free but its first 8 pages (flagless: taken by the faults after the
    # release or a refill of a per-cpu list). Counted as a THP kept on a list, it read the
    # residue over every run of pcp_residue (172-3571) and the phase outside on its layout
    # while that was judged. What an allocation can have taken (the faults, a refill's batch)
    # explains it now. Unexplained blocks are reported, not judged.
    r = load("normal_zone_kept_thp_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["layout"]["first_only_predicted"] == [[1058304, 9]] and ph["layout"]["unexplained"] == []
    assert ph["verdict"] == "within", ph["judgement"]
    # planted: none of it free in the guest (the capture's small blocks there left out): a THP
    # kept whole, over every run
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    layout = R.predict_release(pre, noise_mib=0.0)[2]
    real = [(b.head, b.order) for b in Capture.from_json(r["phases"][-1]["captures"]["freed"]).blocks]
    check = R.LayoutCheck(9, 710, 709, 709, {}, ((1058304, 9),), ())
    assert R.layout_differences(check, layout, real, pre, 172, 3571) == ({"pcp_residue": 1}, ())
    hidden = [(h, o) for h, o in real if not 1058304 <= h < 1058816]
    assert R.layout_differences(check, layout, hidden, pre, 172, 3571) == ({"pcp_residue": 1}, ((1058304, 9),))


# --- the layout judged: each term's blocks within what its inputs allow ---------------------

def test_no_term_puts_down_more_blocks_than_its_inputs_let_it_form_or_split():
    allowed = {"pcp_unknown_pages": 1, "pcp_flush": 0, "guest_frees": 2, "guest_allocations": 2}
    assert R.layout_beyond({"guest_frees": 2, "pcp_unknown_pages": 1, "guest_allocations": 2}, allowed) == ()
    assert R.layout_beyond({"guest_frees": 3}, allowed) == ("guest_frees 3 blocks, its frees complete at most 2",)
    assert R.layout_beyond({"guest_allocations": 3}, allowed)[0].startswith("guest_allocations 3 blocks")
    # a flagless block can be a drain's or a free's: what the frees leave covers it
    assert R.layout_beyond({"guest_frees": 1, "pcp_unknown_pages": 2}, allowed) == ()
    assert R.layout_beyond({"guest_frees": 2, "pcp_unknown_pages": 2}, allowed)[0].startswith("pcp_unknown_pages 2")
    # captures without flagless pages put such a block down to guest_frees: counted together
    assert R.layout_beyond({"guest_frees": 3}, allowed, flagless_known=False) == ()
    assert R.layout_beyond({"guest_frees": 4}, allowed, flagless_known=False)[0].startswith("pcp_unknown_pages 4")


def test_the_layout_is_in_the_verdict_and_catches_a_release_the_model_miscounts():
    # The README's run (6.1, e2epfn 3), exact block for block (476/476/476). Planted: the
    # release taken as two THPs short (the last two the workload mapped): the drop still reads
    # within (1009.7 in [988.1, 1012.0]) and the guest's free memory too, but the guest freed
    # blocks of those THPs that the model's runs all keep on the list: the layout reads outside.
    r = load("readme_tables_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within" and ph["layout"]["exact"] and ph["layout"]["beyond"] == []
    short = copy.deepcopy(r)
    pre = short["phases"][-1]["pre"]
    gone = {tuple(u) for u in [u for u in pre["unmapped"] if u[2]][-2:]}
    pre["unmapped"] = [u for u in pre["unmapped"] if tuple(u) not in gone]
    pre["mapped"] = [u for u in pre["mapped"] if tuple(u) not in gone]
    out = judged(short)["phases"][-1]
    assert out["judgement"]["total"].startswith("within") and out["free_memory"]["verdict"] == "within"
    assert out["verdict"] == "outside" and out["judgement"]["failures"] == [
        ("outside: layout: 3 block(s) put the release's pages left on the lists outside pcp_residue's runs: "
         "257024/9, 258048/10, 259072/10")]


# --- 6.12: our commands' frees stay on their CPU's lists but for one flush -------------------

def test_on_6_12_our_frees_come_back_only_through_one_flush_of_their_cpus_oldest_pages(monkeypatch):
    # A restored 6.12 x 10.0 run on e2epfn 3 (page tables seen): our commands run on CPU 1,
    # whose DMA32 list held 351 pages. What they free goes onto that list; a flush (free_high or
    # at high) takes its oldest, those 351 from before the release: they complete only regions
    # of flagless pages, as pcp_flush's do. The guest_frees term keeps the idle rate's frees
    # alone, and they complete a block only where they are its missing pages (a whole block of
    # their own takes 512). 1003.7 measured, 1000.0 predicted, in [994.1, 1004.0] (9.9 wide,
    # 17.9 before); its 3.7 MiB over: blocks of the release CPU's drains (pcp_unknown_pages).
    r = load("late_slots_6.12_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    assert R.ours_flush_612(pre, (6, 12), 9, 1000) == 351
    assert R.ours_flush_612(pre, (6, 1), 9, 1000) is None            # 6.1: ours_frees_stay_on_lists
    assert R.ours_flush_612(dataclasses.replace(pre, page_table_runs=None), (6, 12), 9, 1000) is None
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within" and (ph["predicted_lo_mib"], ph["predicted_hi_mib"]) == (994.1, 1004.0)
    terms = {t["name"]: t for t in ph["terms"]}
    assert terms["guest_frees"]["hi_mib"] == 0.0 and terms["pcp_unknown_pages"]["hi_mib"] == 4.0
    # planted: the release two THPs short (the first two the workload mapped): 996.0 predicted,
    # outside; with our frees counted as pages free anywhere, as before, the same error read within
    short = copy.deepcopy(r)
    p = short["phases"][-1]["pre"]
    gone = {tuple(u) for u in [u for u in p["unmapped"] if u[2]][:2]}
    p["unmapped"] = [u for u in p["unmapped"] if tuple(u) not in gone]
    p["mapped"] = [u for u in p["mapped"] if tuple(u) not in gone]
    out = judged(short)["phases"][-1]
    assert out["predicted_mib"] == 996.0 and out["judgement"]["total"].startswith("outside"), out["judgement"]
    monkeypatch.setattr(R, "ours_flush_612", lambda *a: None)
    assert judged(short)["phases"][-1]["judgement"]["total"].startswith("within")


def test_every_thp_sized_flagless_block_seen_can_be_on_the_list(monkeypatch):
    # The 6 GiB guest (booted, 4 GiB freed, 6.1): CPU 0's Normal list held 1322 pages and the
    # capture saw three flagless THP-sized blocks in that zone. The model puts one THP from
    # before on the list; the guest had two, drained them first (1055744 and 2055680 free right
    # after the release) and kept three of the release's THPs more than any run with one
    # (40960/10, 2059264/9). The drop read within (4073.9 in [4069.2, 4094.0]), the layout not.
    # The term's runs with every seen block on the list, as far as the count holds them, keep it
    # within: positions unknown (three seen, two fit), a block each among pcp_unknown_pages'.
    r = load("six_gib_seen_thps_6.1_on")
    ph = judged(r)["phases"][-1]
    assert ph["verdict"] == "within" and ph["layout"]["unexplained"] == [], ph["judgement"]
    res = next(t for t in ph["terms"] if t["name"] == "pcp_residue")
    assert "every THP-sized flagless block seen" in res["explanation"] and res["lo_mib"] == -12.0, res
    _without_runs(monkeypatch, "thps_seen_all")
    out = judged(r)["phases"][-1]
    assert out["verdict"] == "outside" and out["judgement"]["total"].startswith("within")
    assert out["layout"]["unexplained"] == [[40960, 10], [2059264, 9]], out["layout"]


def _walked_list(version, lists: dict, count: int, high: int = 6985, batch: int = 63):
    """A zone whose CPU 0 lists hold exactly `lists` (list index -> pfns, oldest first)."""
    from harness.model.kernel import kernel_spec
    spec = kernel_spec("6.1" if version < (6, 2) else "6.12")
    zs = R.ZoneState(node=0, name="DMA32", start=4096, end=4096 + (1 << 18), wmark_min=0, wmark_low=0,
                     wmark_high=0, pcps=(R.Pcp(0, count, high, batch),))
    z = R.zone_model(zs, spec)
    walk = R.PcpContents("0/DMA32", 0, tuple(tuple(lists.get(i, ())) for i in range(14)))
    return z, R.PcpList(z, zs.pcps[0], version, exact=walk)


def test_a_walked_list_set_drains_as_free_pcppages_bulk_does():
    """From the freed page's list on, each list whole (oldest first) before the next index, the
    order-0 unmovable list (index 0) last: the round robin the model had to guess before the
    lists were walked (elsewhere_before_thp)."""
    lists = {0: [8000], 1: [9000, 9001, 9002], 2: [9100], 3: [9200], 13: [10240]}   # 3: order 1, 13: a THP
    z, pl = _walked_list((6, 1), lists, count=1 + 3 + 1 + 2 + 512)
    assert (pl.count, pl.elsewhere, pl.thp, pl.residue()) == (519, 4, [10240], [])
    pl._bulk(5, thp_first=False)                 # order-0 movable 3, reclaimable 1, then the order-1 page
    free = {p for pfn, o, _, _ in z.free_blocks() for p in range(pfn, pfn + (1 << o))}
    assert free == {9000, 9001, 9002, 9100, 9200, 9201}
    assert pl.count == 519 - 6 and pl.thp == [10240] and {k: v for k, v in pl.other.items() if v} == {0: [8000]}
    pl._bulk(1, thp_first=False)                 # the THP list comes before index 0
    assert pl.thp == [] and pl.other[0] == [8000] and pl.count == 1


def test_a_walked_list_set_takes_the_count_beyond_the_walk_as_unknown_pages():
    _, pl = _walked_list((6, 1), {1: [9000, 9001]}, count=5)      # the unmap's page tables: unmovable
    assert pl.order0 == [[9000, 2, False, True]] and pl.other == {0: [-1, -1, -1]} and pl.elsewhere == 3
    _, pl = _walked_list((6, 1), {1: [9000, 9001, 9002]}, count=1)      # two taken since: the newest
    assert pl.order0 == [[9000, 1, False, True]]
    _, pl = _walked_list((6, 1), {1: [9005, 9004, 9003]}, count=3)      # freed high to low
    assert pl.order0 == [[9003, 3, True, True]]


def test_walked_lists_leave_the_residue_nothing_to_guess(monkeypatch):
    """The README scenario with the capture's walk of the per-cpu lists (e2epfn 4): the model
    drains the lists as they were, so the release's residue has one value and no page of
    unknown position goes back; the layout right after matches block for block. Without the
    walk the same run keeps the old, wider terms."""
    ph = judged(load("touch_free_walked_6.1_on"))["phases"][-1]
    terms = {t["name"]: (t["lo_mib"], t["hi_mib"]) for t in ph["terms"]}
    assert ph["verdict"] == "within" and ph["layout"]["real"] == ph["layout"]["matched"] == 472
    assert terms["pcp_residue"] == (0.0, 0.0) and terms["pcp_unknown_pages"] == (0.0, 0.0)
    monkeypatch.setattr(prediction, "pcp_contents", lambda scan, zones: ())
    unwalked = judged(load("touch_free_walked_6.1_on"))["phases"][-1]
    assert unwalked["predicted_hi_mib"] - unwalked["predicted_lo_mib"] > ph["predicted_hi_mib"] - ph["predicted_lo_mib"]


@pytest.mark.parametrize("plant", ["pfn+1", "other cpu"])
def test_a_walk_read_wrong_is_caught(monkeypatch, plant):
    """Planted: the walk's pages one pfn off (a wrong struct page size or vmemmap base would
    do worse), or each CPU's lists taken for the other's: the layout and the curve read outside."""
    walk = prediction.pcp_contents

    def wrong(scan, zones):
        return tuple(R.PcpContents(c.zone, 1 - c.cpu, c.lists) if plant == "other cpu" else
                     R.PcpContents(c.zone, c.cpu, tuple(tuple(p + 1 for p in li) for li in c.lists))
                     for c in walk(scan, zones))
    monkeypatch.setattr(prediction, "pcp_contents", wrong)
    ph = judged(load("touch_free_walked_6.1_on"))["phases"][-1]
    assert ph["verdict"] == "outside"
    assert any("layout" in f for f in ph["judgement"]["failures"])


def test_a_walked_flush_takes_the_oldest_pages_round_robin():
    c = R.PcpContents("0/DMA32", 1, tuple(tuple(x) for x in
                                          [[8000, 8001], [9000, 9001, 9002], [], [9200]] + [[]] * 9 + [[10240]]))
    assert R.walked_flush(c, 4, start=1) == [(9000, 0), (9001, 0), (9002, 0), (9200, 1)]
    assert R.walked_flush(c, 3, start=13) == [(10240, 9)]            # a THP meets the count alone
    assert R.walked_flush(c, 3, start=0) == [(8000, 0), (8001, 0), (9000, 0)]


def test_a_walked_flush_completes_only_regions_its_pages_make_whole():
    """Regions of 4 pages: region 2 has 3 free after the release, region 3 has 2; the flush's
    oldest page fills region 2 alone, from whichever list index gives most."""
    c = R.PcpContents("0/DMA32", 1, ((8,), (12,)) + ((),) * 12)
    held = {2: 4, 3: 4}.get
    assert R.walked_flush_gain([(c, 1)], {2: 3, 3: 2}, 4, held, set()) == (4, {2})
    assert R.walked_flush_gain([(c, 1)], {2: 3, 3: 2}, 4, held, {2}) == (0, set())   # another term's
    assert R.walked_flush_gain([(None, 1)], {2: 3}, 4, held, set()) is None            # not walked


def test_a_walked_flush_of_another_cpus_list_counts_its_own_pages(monkeypatch):
    """3 GiB (DMA32 and Normal), our commands' list 763 pages under its high: the flush it can
    reach takes that list's oldest pages, which the walk names; none of them completes a
    region here, where the regions closest to whole gave 8 MiB. The layout right after had no
    such block (708 real, 708 predicted since the unmap's tables go where the capture saw the
    page tables, release_tables_split; 706 before, two of the release's regions in Normal)."""
    ph = judged(load("normal_zone_walked_6.1_on"))["phases"][-1]
    terms = {t["name"]: (t["lo_mib"], t["hi_mib"]) for t in ph["terms"]}
    assert ph["verdict"] == "within" and terms["pcp_flush"] == (0.0, 0.0)
    assert ph["layout"]["differences"] == {} and ph["layout"]["exact"] and not ph["layout"]["beyond"]
    monkeypatch.setattr(R, "walked_flush_gain", lambda *a: None)
    unwalked = {t["name"]: t["hi_mib"] for t in judged(load("normal_zone_walked_6.1_on"))["phases"][-1]["terms"]}
    assert unwalked["pcp_flush"] == 8.0


@pytest.mark.parametrize("name,measured,model,before,blocks", [
    # restored 3 GiB, a buddyinfo read before the touch (the e2e case): its 818 page tables all
    # in Normal, 346 of its 767 THPs in DMA32
    ("tables_in_normal_6.1_on", 1509.8, 1510.0, 1502.0, 705),
    # restored 3 GiB by the CLI (last session): 6 page tables in DMA32, 811 in Normal; 346 of its THPs in DMA32
    ("normal_zone_walked_6.1_on", 1517.8, 1518.0, 1510.0, 708),
])
def test_the_unmaps_tables_go_to_the_zones_the_capture_saw_them_in(monkeypatch, name, measured, model, before, blocks):
    """A THP fault takes its page table (order 0) from the first zone over its watermark and
    the THP from the first with an order-9 block: they need not share a zone. Split by the
    page tables the capture saw (e2epfn's class T), the model's Normal list flushes in phase
    with the kernel's, its layout exact. Planted: the tables split as the THPs (the rule
    before): the prediction 8 MiB under and the layout off."""
    ph = judged(load(name))["phases"][-1]
    assert (ph["drop_mib"], ph["predicted_mib"]) == (measured, model) and ph["verdict"] == "within"
    assert ph["layout"]["exact"] and ph["layout"]["real"] == ph["layout"]["matched"] == blocks, ph["layout"]
    split = R.release_tables_split
    monkeypatch.setattr(R, "release_tables_split", lambda m, f, node, pages, tables=None: split(m, f, node, pages))
    out = judged(load(name))["phases"][-1]
    assert out["predicted_mib"] == before and not out["layout"]["exact"], out["layout"]


def test_a_walked_drop_caches_is_the_models_own_and_frees_its_xarray_slabs_too():
    """6.1 page cache (CLI, 512 MiB read, 578 MiB dropped), its CPU's lists walked by the
    capture: the drop drains them whole (free_high, Released.drained_after) in the model's own
    run, every page at its pfn, so none is of unknown position (pcp_unknown_pages was +6 MiB on
    3423 pages, 13.4 MiB on the free memory), and our commands' frees stay on CPU 1's lists as
    on a settled release. What the guest's free memory reads over the model's (1.31 MiB) is the
    drop's own xarray-node slabs: a guest read radix_tree_node at 173 slabs of 2 pages after
    the read and 34 after the drop (nr_slab_reclaimable 278 pages down); this run's slabinfo
    before the drop gives 384 pages. Width 24.2 -> 16.2 MiB, the free memory's 21.2 -> 6.0.
    Planted: the slabs not counted (slabinfo without radix_tree_node): the free memory outside.
    Without slabinfo at all (unreadable, an older record) the drain's pages stay of unknown
    position, as before: within, 24.2 wide."""
    r = load("page_cache_walked_6.1_on")
    ph = judged(r)["phases"][-1]
    terms = {t["name"]: t for t in ph["terms"]}
    assert ph["verdict"] == "within" and ph["layout"]["exact"], ph["judgement"]["failures"]
    assert terms["pcp_unknown_pages"]["hi_mib"] == 0.0 and terms["pcp_unknown_pages"]["explanation"].startswith("none")
    assert "384 pages" in terms["guest_frees"]["explanation"] and ph["model"]["inputs"]["ours_frees_stay"]
    assert round(ph["predicted_hi_mib"] - ph["predicted_lo_mib"], 1) == 16.2
    fm = ph["free_memory"]
    assert fm["verdict"] == "within" and fm["hi_mib"] - fm["lo_mib"] < 6.1, fm
    out = copy.deepcopy(r)
    held = out["phases"][-1]["snapshots"]["held"]
    held["slabinfo"] = held["slabinfo"].replace("radix_tree_node", "radix_tree_gone")
    assert judged(out)["phases"][-1]["free_memory"]["verdict"] == "outside"
    for slabinfo in ("", None):
        out = copy.deepcopy(r)
        if slabinfo is None:
            del out["phases"][-1]["snapshots"]["held"]["slabinfo"]
        else:
            out["phases"][-1]["snapshots"]["held"]["slabinfo"] = slabinfo
        ph = judged(out)["phases"][-1]
        unknown = next(t for t in ph["terms"] if t["name"] == "pcp_unknown_pages")
        assert ph["verdict"] == "within" and unknown["explanation"].startswith("up to 3423"), unknown
        assert round(ph["predicted_hi_mib"] - ph["predicted_lo_mib"], 1) == 24.2


def test_the_tables_split_by_class_t_only_where_there_are_enough_of_them():
    # the page tables the capture saw include other processes'; where those in the zones that
    # pass (the release CPU's node) are fewer than the unmap frees, its tables are elsewhere
    # and the THPs' share is used
    r = load("tables_in_normal_6.1_on")
    pre, _ = prediction.pre_release_input(r["phases"][-1], r)
    m, spec = R.machine_before(pre)
    freed = R.pages_freed_by_unmap(pre.mapped, pre.unmapped, spec.pageblock_order)
    pages = R.gather_pages(freed, spec.version)
    assert R.release_tables_split(m, freed, pre.cpu_node, pages, pre.page_table_runs)[0] == {"0/Normal": 764}
    few = ((pre.page_table_runs[0][0], pages - 1),)
    assert R.release_tables_split(m, freed, pre.cpu_node, pages, few) == R.release_tables_split(m, freed, pre.cpu_node, pages)
    assert R.release_tables_split(m, freed, pre.cpu_node, pages)[0] == {"0/Normal": 420, "0/DMA32": 344}


def test_the_unmaps_page_tables_go_to_the_unmovable_list(monkeypatch):
    """A hinted migration's destination release (walked lists; its region 18 THP runs and 4 KiB
    pages): the THPs' deposited page tables (125) are unmovable, so they join CPU 0's order-0
    unmovable list, not the movable one. There the order-0 frees' last flush empties the
    movable list and reaches the order-3 lists and one more THP, as the walk after the release
    showed (list 0 1819 -> 1947 pages, lists 2-12 empty, 5 THPs left): 244.0 predicted for
    243.9 measured, the layout 203/203/203. Planted: the tables on the movable list (the
    model's first walked runs): 242.0 in [236.4, 242.0], outside, one block unexplained."""
    ph = judged(load("hint_destination_walked_6.1_on"))["phases"][-1]
    assert ph["verdict"] == "within" and ph["layout"]["real"] == ph["layout"]["matched"] == 203
    assert ph["predicted_mib"] == 244.0
    init = R.PcpList.__init__

    def movable(self, *a, **k):
        init(self, *a, **k)
        if self.other is not None and self.other.get(0) and self.other[0][-1] == -1:
            n = self.other[0].count(-1)
            self.other[0] = [p for p in self.other[0] if p >= 0]
            self.elsewhere -= n
            self.order0.append([-1, n, False])
    monkeypatch.setattr(R.PcpList, "__init__", movable)
    ph = judged(load("hint_destination_walked_6.1_on"))["phases"][-1]
    assert ph["verdict"] == "outside" and ph["layout"]["unexplained"]


def test_pages_taken_since_the_walk_come_off_the_lists_so_they_hold_the_count():
    _, pl = _walked_list((6, 1), {0: [8000, 8001], 1: [9000]}, count=1)
    assert pl.order0 == [] and pl.other[0] == [8000] and pl.elsewhere == 1 and pl.count == 1


def test_a_gather_page_from_an_empty_unmovable_list_refills_it_from_the_buddy_lists():
    z, pl = _walked_list((6, 1), {1: [9000]}, count=1, batch=4)
    z.add_free_block(16384, 2, R.UNMOVABLE)                 # four free unmovable pages
    pl.allocate_unknown(1)
    assert pl.other[0] == [16387, 16386, 16385] and pl.count == 4 and pl.elsewhere == 3
