"""The balloon verdicts on stored real runs (tests/data/balloon/), and planted errors that
each check must catch, in both directions."""
import copy
import json
from pathlib import Path

import pytest

from harness.scenarios import inflate

DATA = Path(__file__).parent.parent / "data" / "balloon"


def _load(name):
    return json.loads((DATA / name).read_text())


@pytest.fixture(scope="module")
def off():
    return _load("inflate_off_6.1_7.2.json")


def _verdicts(r):
    r = copy.deepcopy(r)
    return {v["phase"]: v for v in inflate.judge(r)}


def test_stored_runs_are_within(off):
    v = _verdicts(off)
    assert v["inflate"]["verdict"] == "within" and v["deflate"]["verdict"] == "within", v
    # reporting off: the freed memory stayed resident; the balloon got mostly held pages
    assert v["inflate"]["held_before_in_balloon"] == 61055 and v["inflate"]["pages"] == 65536
    assert v["inflate"]["prediction"]["expected_mib"] > 200


def _plant(r, phase, **changes):
    r = copy.deepcopy(r)
    ph = next(p for p in r["balloon_phases"] if p["phase"] == phase)
    for k, f in changes.items():
        ph[k] = f(ph[k])
    return _verdicts(r)[phase]


@pytest.mark.parametrize("key,change,check", [
    ("drop_mib", lambda x: x + 40, "rss_within"),          # more back than the held pages handed over
    ("drop_mib", lambda x: -10.0, "rss_within"),           # RSS rose
    ("held_before_in_balloon", lambda x: 100, "held_within"),  # fewer held pages than the model's floor
    ("held_after_in_balloon", lambda x: 1, "discarded"),   # QEMU left a page
    ("memtotal_kb_after", lambda x: x + 4, "memtotal"),    # one page short
    ("memtotal_kb_after", lambda x: x - 4, "memtotal"),    # one page too many
    ("balloon_runs", lambda x: [[x[0][0] + 1, x[0][1]]] + x[1:], "pages_in_balloon"),
    ("vmstat_after", lambda x: {**x, "balloon_inflate": x["balloon_inflate"] + 1}, "vmstat_inflate"),
    ("move", lambda x: {**x, "events": x["events"][:-1] + [[0, x["target"] - 4096]]}, "event_at_target"),
])
def test_planted_inflate_errors_fail(off, key, change, check):
    v = _plant(off, "inflate", **{key: change})
    assert v["verdict"] == "outside" and not v["checks"][check], v["checks"]


@pytest.mark.parametrize("key,change,check", [
    ("drop_mib", lambda x: -6.0, "rss_flat"),               # RSS rose on deflate
    ("drop_mib", lambda x: 6.0, "rss_flat"),
    ("released_free_held", lambda x: 1, "released_not_held"),
    ("memtotal_kb_after", lambda x: x - 4, "memtotal"),
    ("vmstat_after", lambda x: {**x, "balloon_deflate": x["balloon_deflate"] - 1}, "vmstat_deflate"),
])
def test_planted_deflate_errors_fail(off, key, change, check):
    # reporting off: nothing a deflate completes is discarded, so the drop is held to noise
    v = _plant(off, "deflate", **{key: change})
    assert v["verdict"] == "outside" and not v["checks"][check], v["checks"]


def test_deflate_on_oom_changes_what_memtotal_must_do(off):
    r = copy.deepcopy(off)
    r["deflate_on_oom"] = True  # MemTotal must then stay put; this run's dropped by the balloon
    v = _verdicts(r)
    assert not v["inflate"]["checks"]["memtotal"] and not v["deflate"]["checks"]["memtotal"]


def test_hugetlbfs_expects_nothing_discarded(off):
    r = copy.deepcopy(off)
    r["host_page_size"] = 2 << 20  # the same run judged as if on 2 MiB pages: every page gone is wrong
    v = _verdicts(r)["inflate"]
    assert v["prediction"]["expected_mib"] == 0 and not v["checks"]["discarded"]


def test_stored_612_run_after_reporting_gives_back_little():
    v = _verdicts(_load("inflate_on_6.12_10.0.json"))
    assert v["inflate"]["verdict"] == "within" and v["deflate"]["verdict"] == "within", v
    p = v["inflate"]["prediction"]
    assert p["hi_mib"] < 32 and v["inflate"]["measured_mib"] < 8, p  # reporting had discarded the free memory


def test_stored_hugetlbfs_run_frees_nothing_and_a_discard_would_fail():
    r = _load("inflate_hugetlbfs_off_6.1_7.2.json")
    v = _verdicts(r)
    assert v["inflate"]["verdict"] == "within" and v["deflate"]["verdict"] == "within", v
    assert r["qemu_subpage_warning"] and v["inflate"]["prediction"]["expected_mib"] == 0
    assert v["inflate"]["held_before_in_balloon"] == 64283  # held pages QEMU could not give back
    for key, change in (("held_after_in_balloon", lambda x: 64283 - 1), ("ram_drop_mib", lambda x: 20.0)):
        w = _plant(r, "inflate", **{key: change})
        assert w["verdict"] == "outside", (key, w["checks"])


def test_a_deflate_may_give_back_what_it_completes_and_no_more():
    # 6.12 x 10.0, reporting on: RSS went 4.0 MiB down during the deflate; the bound is the
    # deflating CPU's pcp pages (27 MiB) plus held sub-order free pages next to released ones
    r = _load("inflate_on_6.12_10.0.json")
    ph = next(p for p in r["balloon_phases"] if p["phase"] == "deflate")
    bound = inflate.deflate_bound_mib(ph)
    assert 26.5 < bound < 27.0, bound
    assert _verdicts(r)["deflate"]["checks"]["rss_flat"]
    over = _plant(r, "deflate", drop_mib=lambda x: 5.0 + bound + 0.2)   # more than noise + bound
    assert not over["checks"]["rss_flat"] and over["drop_bound_mib"] == round(bound, 1)
    # the bound is the deflating CPU's lists, not both CPUs' (27 + 2 MiB)
    assert not _plant(r, "deflate", drop_mib=lambda x: 5.0 + bound + 2.3)["checks"]["rss_flat"]
