"""The workload scenario's pure parts: e2erun's lines, e2epfn's PFN runs, the process tree."""
import pytest

from harness.scenarios.workload import PfnRuns, descendants, parse_event, parse_pfn_runs


def test_events():
    assert parse_event("started pid=73\n") == ("started", {"pid": "73"})
    assert parse_event("exit pid=75 status=0 rss_kib=262780 comm=memhog") == (
        "exit", {"pid": "75", "status": "0", "rss_kib": "262780", "comm": "memhog"})
    assert parse_event("exit pid=9 status=1 rss_kib=1 comm=my prog (x)")[1]["comm"] == "my prog (x)"
    assert parse_event("done status=127") == ("done", {"status": "127"})


def test_pfn_runs():
    p = parse_pfn_runs("e2epfn-pid 1\nP 100 512 1\nP 612 3 0\n== end pages=515 huge=512\n")
    assert p == PfnRuns(((100, 512), (612, 3)), (True, False))
    assert (p.pages, p.huge_pages) == (515, 512)
    assert p.mib == pytest.approx(515 * 4096 / 2**20)
    assert parse_pfn_runs("e2epfn-pid 1\n== end pages=0 huge=0\n").pages == 0


@pytest.mark.parametrize("text", ["", "e2epfn 1\n== end\n", "e2epfn-pid 1\nP 1 2\n== end\n",
                                  "e2epfn-pid 1\nX 1 2 0\n== end\n", "e2epfn-pid 1\nP 1 2 0\n"])
def test_pfn_runs_refuse_other_output(text):
    with pytest.raises(ValueError):
        parse_pfn_runs(text)


def test_descendants_follow_ppid_and_survive_odd_names():
    stats = "\n".join([
        "1 (init) S 0 1 1 0",
        "70 (e2erun) S 60 70 70 0",
        "71 (sh) S 70 70 70 0",
        "72 (my prog) (x)) R 71 70 70 0",
        "73 (memhog) R 72 70 70 0",
        "80 (other) S 1 80 80 0",
        "garbage",
    ])
    assert descendants(stats, 71) == [71, 72, 73]
    assert descendants(stats, 73) == [73]
