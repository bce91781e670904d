"""The failure classes the issue names, each met by real means (a process that ends, a file
that is not what it should be) and each mapped to exit 3 with a message that says what failed.
The guest-side ones (QEMU killed, a panic, a failing workload, Ctrl-C) are in
tests/e2e/test_cli_runs.py."""
import subprocess

import pytest

from harness.measure import pagemap, procfs
from harness.errors import GuestError, classify
from harness.measure.hostmem import Sampler
from harness.measure.pagemap import RamRange


@pytest.fixture
def sleeper():
    p = subprocess.Popen(["sleep", "30"])
    with open(f"/proc/{p.pid}/maps") as f:
        hva = int(f.readline().split("-")[0], 16)
    yield p, hva
    p.kill()
    p.wait()


def test_sampler_of_a_process_that_ends(sleeper, tmp_path):
    p, hva = sleeper
    csv = tmp_path / "samples.csv"
    with Sampler(p.pid, hva, period=0.02, csv_path=csv) as s:
        s.wait_for(lambda xs: len(xs) >= 3, 10, "three samples")
        p.kill()
        p.wait()
        with pytest.raises(GuestError) as e:
            s.wait_for(lambda xs: False, 10, "RSS to settle")
    code, msg = classify(e.value)
    assert code == 3 and f"sampling QEMU {p.pid} failed (QEMU gone?) while waiting for RSS to settle" in msg
    rows = csv.read_text().splitlines()
    assert rows[0] == "unix_time,monotonic_s,qemu_rss_mib,guest_ram_rss_mib,tcg_code_mib" and len(rows) >= 4


def test_pagemap_read_of_a_process_that_ended(sleeper):
    p, hva = sleeper
    p.kill()
    p.wait()
    with pytest.raises(OSError) as e:
        pagemap.read_held(p.pid, [RamRange(0, 16, hva)])
    code, msg = classify(e.value)
    assert code == 3 and f"/proc/{p.pid}/pagemap" in msg


def test_a_proc_file_that_does_not_parse():
    with pytest.raises(procfs.ProcParseError) as e:
        procfs.parse_buddyinfo("Node 0, zone DMA32 x y z\n")
    code, msg = classify(e.value)
    assert code == 3 and "ProcParseError: buddyinfo: cannot parse line" in msg


def test_a_host_command_that_times_out():
    with pytest.raises(subprocess.TimeoutExpired) as e:
        subprocess.run(["sleep", "5"], timeout=0.2)
    code, msg = classify(e.value)
    assert code == 3 and msg.startswith("failed: host command timed out after 0.") and msg.endswith(" s: sleep 5")
