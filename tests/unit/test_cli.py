"""Bad input to the CLI: exit 2 and one line on stderr, no traceback, no guest started."""
import json

import pytest

from harness.cli import main


@pytest.mark.parametrize("argv,match", [
    (["run", "--mib", "lots"], "not a size"),
    (["run", "--reporting", "maybe"], "on or off"),
    (["run", "no-such-scenario"], "invalid choice"),
    (["run", "--memory", "512", "--mib", "1024"], "must be below"),
    (["run", "--memory", "64"], "memory"),
    (["run", "--smp", "0"], "smp"),
    (["run", "--reporting-order", "12"], "order"),
    (["predict", "/nonexistent/result.json"], "not a result file"),
    (["frobnicate"], "invalid choice"),
    (["run", "hint-migrate", "--hinting", "maybe"], "on or off"),
    (["run", "hint-migrate", "--memory", "4096"], "at most 2048 MiB"),
    (["run", "hint-migrate", "--backend", "memfd", "--memory", "1024", "--mib", "256"], "anon backend"),
])
def test_bad_input_is_one_line(argv, match, capsys, monkeypatch):
    monkeypatch.setattr("harness.guest.Guest.launch", lambda self: pytest.fail("no guest for bad input"))
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_predict_refuses_a_file_without_snapshots(tmp_path, capsys):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"scenario": "touch-free"}))
    assert main(["predict", str(f)]) == 2
    assert "not a result file" in capsys.readouterr().err


def test_kvm_where_it_cannot_work(capsys, monkeypatch):
    monkeypatch.setattr("harness.accel.kvm_opens", lambda path="/dev/kvm": False)
    assert main(["run", "--accel", "kvm"]) == 2
    err = capsys.readouterr().err.strip()
    assert "accel kvm" in err and len(err.splitlines()) == 1


def test_predict_shows_the_bitmap_what_if(capsys):
    from pathlib import Path
    run = Path(__file__).parent.parent / "data" / "bitmap" / "touch-free-6.1-qemu7.2.json"
    assert main(["predict", str(run), "--bitmap"]) == 0
    out = capsys.readouterr().out
    assert "bitmap design (seed 001), curve: 0: 1012" in out and "the same blocks" in out
