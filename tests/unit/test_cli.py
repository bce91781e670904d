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
    (["run", "workload"], "needs --workload"),
    (["run", "touch-free", "--workload", "memhog 1g"], "drop 'touch-free' or --workload"),
    (["run", "--release", "pkill x"], "go with --workload"),
    (["run", "--workload", "x", "--copy", "/nonexistent/prog"], "--copy /nonexistent/prog: no such file"),
    (["run", "--workload", "x", "--timeout", "0"], "--timeout must be positive"),
    (["run", "--kernel", "/nonexistent/bzImage"], "no such file"),
    (["run", "--kernel", "/etc/hostname"], "not an x86 bzImage"),
    (["run", "--kernel", "/etc/hostname", "--guest-kernel", "6.12"], "name two kernels"),
    (["run", "--modules", "/tmp"], "--modules goes with --kernel PATH of a bzImage"),
    (["shell", "--memory", "64"], "memory"),
    (["image", "path", "--kernel", "/nonexistent.deb"], "no such file"),
    (["image", "frob"], "invalid choice"),
    (["run", "hint-migrate", "--hinting", "maybe"], "on or off"),
    (["run", "hint-migrate", "--memory", "4096"], "at most 2048 MiB"),
    (["run", "hint-migrate", "--backend", "memfd", "--memory", "1024", "--mib", "256"], "anon backend"),
])
def test_bad_input_is_one_line(argv, match, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("harness.vm.guest.Guest.launch", lambda self: pytest.fail("no guest for bad input"))
    out = ["--out", str(tmp_path / "results")] if argv[0] == "run" else []
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(argv + out))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    # found before any QEMU ran: no run folder is left for it
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())


def test_list_names_every_scenario_with_what_it_proves(capsys):
    from harness.scenarios import SCENARIOS
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [s.name for s in SCENARIOS]
    assert all(len(line.split()) > 5 for line in lines)


def test_json_bad_input_prints_only_a_record_on_stdout(capsys, tmp_path):
    assert main(["run", "workload", "--json", "--out", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    # argparse-level errors print nothing on stdout; a UserError found later prints one record
    assert out == "" or json.loads(out)["exit_code"] == 2


def test_predict_refuses_a_file_without_snapshots(tmp_path, capsys):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"scenario": "touch-free"}))
    assert main(["predict", str(f)]) == 2
    assert "not a result file" in capsys.readouterr().err


def test_kvm_where_it_cannot_work(capsys, monkeypatch):
    monkeypatch.setattr("harness.vm.accel.kvm_opens", lambda path="/dev/kvm": False)
    assert main(["run", "--accel", "kvm"]) == 2
    err = capsys.readouterr().err.strip()
    assert "accel kvm" in err and len(err.splitlines()) == 1


def test_image_path_and_clean(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BALLOON_E2E_CACHE", str(tmp_path))
    assert main(["image", "path"]) == 2
    assert "no cached image for kernel 6.1" in capsys.readouterr().err
    from harness.build import image
    key, _ = image.resolve("6.1")
    built = image.images_dir() / f"6.1-{key}"
    built.mkdir()
    (built / "manifest.json").write_text("{}")
    assert main(["image", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(built)
    assert main(["image", "clean"]) == 0
    assert f"removed {built}" in capsys.readouterr().err and not built.exists()
def test_predict_shows_the_bitmap_what_if(capsys):
    from pathlib import Path
    run = Path(__file__).parent.parent / "data" / "release" / "touch_free_6.1_on.json"
    assert main(["predict", str(run), "--bitmap"]) == 0
    out = capsys.readouterr().out
    assert "bitmap design (seed 001), curve: 0: 1018" in out and "the same blocks" in out
