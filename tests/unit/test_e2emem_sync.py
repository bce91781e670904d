"""e2emem's `sync` (guest_images/src/e2emem.c), built and run on the host: it reads this CPU's
per-cpu highs and the zones' nr_mlock from /proc/zoneinfo and waits at most SYNC_MS for
vmstat_update's run on this CPU to lower the one or fold its mlocked page into the other."""
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "guest_images" / "src" / "e2emem.c"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (ci/setup.sh installs it)")
def test_sync_answers_within_its_bound(tmp_path):
    exe = tmp_path / "e2emem"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(SRC)], check=True)
    t = time.monotonic()
    out = subprocess.run([str(exe)], input="sync\nquit\n", capture_output=True, text=True, timeout=10).stdout
    took = time.monotonic() - t
    m = re.fullmatch(r"ok synced=([01]) sync_ms=(\d+) via=(high|mlock|none)\n", out)
    assert m, out
    assert int(m.group(2)) <= 1300 + 50 and took < 3.0       # SYNC_MS, and one poll over it
