"""The run folder: named by time and scenario, never reused, written whole, incomplete runs say so."""
import json
import time

from harness import runfolder
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
