"""The run folder: named by time and scenario, never reused, written whole, incomplete runs say so."""
import json
import time

from harness.report import runfolder
from harness.cli import model_caveat


def test_folder_names_sort_by_time_and_never_collide(tmp_path):
    t = time.mktime((2026, 12, 1, 19, 30, 5, 0, 0, -1))
    assert runfolder.folder_name(t, "touch-free") == "20261201-193005-touch-free"
    a = runfolder.create(tmp_path / "results", "touch-free", t)
    b = runfolder.create(tmp_path / "results", "touch-free", t)
    assert a.name == "20261201-193005-touch-free" and b.name == "20261201-193005-touch-free-2"


def test_write_json_is_whole_and_incomplete_lists_what_was_kept(tmp_path):
    runfolder.write_json(tmp_path, "result.json", {"a": 1})
    assert json.loads((tmp_path / "result.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    (tmp_path / "console.log").write_text("x")
    r = runfolder.incomplete("interrupted", "interrupted", 130, tmp_path, time.time())
    assert r["complete"] is False and r["exit_code"] == 130 and r["kept"] == ["console.log", "result.json"]


def test_model_caveat_names_unchecked_kernels():
    assert model_caveat("6.1.0-57-amd64") is None and model_caveat("6.12.117+deb13-amd64") is None
    c = model_caveat("6.16.3+deb13-amd64")
    assert "6.16" in c and "unchecked" in c and "6.12" in c


def test_plot_reads_well_and_its_text_is_pure(tmp_path):
    from harness.report.plot import block_lines, figures_lines, plot
    ph = {"phase": "free", "freed_mib": 256, "reportable_mib": 254.0, "drop_mib": 250.1, "seconds_to_90pct": 2.1,
          "rss_peak_mib": 600.0, "ram_rss_peak_mib": 500.0, "predicted_mib": 252.0, "predicted_lo_mib": 243.0,
          "predicted_hi_mib": 270.0, "predicted_seconds_to_90pct": 2.0, "verdict": "within",
          "samples": [[0.0, 600.0, 500.0], [2.1, 350.0, 250.0], [5.0, 349.9, 249.9]],
          "predicted_curve": [[0.0, 0.0], [2.0, 252.0]],
          "model": {"passes": [{"t_start": 2.0, "reported_mib": 252.0}]},
          "per_block": {"settled": {"blocks": {"DMA32": {"10": {"reported": 63, "unreported": 0}}}},
                        "transition": {"held_after_free": 64512, "released": 64512, "still_held": 0},
                        "violations": {"count": 0}}}
    assert block_lines(ph["per_block"]) == ["DMA32  o10: 63 rep / 0 not",
                                            "held after release 64512 pages: 64512 given back, 0 still held",
                                            "invariant violations: 0"]
    assert figures_lines(ph)[1] == "measured drop 250.1 MiB, 90% after 2.1 s"
    r = {"scenario": "touch-free", "reporting": True, "verdict": "within", "kernel": "6.1.0-47-cloud-amd64",
         "qemu": "7.2.22", "accel": "tcg", "memory_mib": 1024, "phases": [ph], "model_caveat": None}
    plot(r, str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
