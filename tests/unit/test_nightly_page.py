"""The night's page: rendered by headless Chromium from a file:// URL (no network), the
screenshot must show the matrix table: its header band in the header colour, and one green
verdict cell per phase within. A page whose table is hidden must fail the same check."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from harness.report import history
from harness.report.nightly_page import HEADER_BG, WITHIN_BG, interval_svg, render, trend_svg

NIGHT1 = Path(__file__).parents[1] / "data" / "nightly" / "night-1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--hide-scrollbars", "--window-size=1800,700"]


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def pixels_of(shot: np.ndarray, hex_colour: str) -> np.ndarray:
    """Mask of the screenshot's pixels of exactly this colour (+-2 for PNG rounding)."""
    img = np.rint(shot[..., :3] * 255).astype(int)
    return np.all(np.abs(img - rgb(hex_colour)) <= 2, axis=-1)


def screenshot(page: Path, tmp_path: Path) -> np.ndarray:
    out = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    profile.mkdir()
    r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}", page.as_uri()],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0 and out.exists(), r.stderr[-2000:]
    return mpimg.imread(str(out))


def table_seen(shot: np.ndarray, phases_within: int) -> bool:
    header = pixels_of(shot, HEADER_BG)
    rows_header = np.flatnonzero(header.any(axis=1))
    if header.sum() < 5000 or len(rows_header) < 15:  # a band ~25 px high across the table
        return False
    green = pixels_of(shot, WITHIN_BG)
    green_rows = np.flatnonzero(green.any(axis=1))
    # separate runs of green rows = verdict cells stacked under the header
    runs = 1 + int(np.sum(np.diff(green_rows) > 1)) if len(green_rows) else 0
    return runs == phases_within and green_rows.min() > rows_header.max()


@pytest.fixture
def night():
    return history.load(NIGHT1)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (ci/setup.sh installs Debian's chromium)")
def test_the_page_renders_the_table_in_chromium(tmp_path, night):
    within = sum(r.verdict == "within" for r in night.rows)
    page = tmp_path / "index.html"
    page.write_text(render(night, [night, night]))
    assert table_seen(screenshot(page, tmp_path), within)
    hidden = tmp_path / "hidden.html"
    hidden.write_text(page.read_text().replace('<table id="matrix">', '<table id="matrix" style="display:none">'))
    (tmp_path / "profile").rename(tmp_path / "profile-1")
    assert not table_seen(screenshot(hidden, tmp_path), within)


def test_the_page_holds_every_row_and_plot(night):
    page = render(night, [night])
    assert page.count("<tr>") == len(night.rows) + 1
    assert page.count('aria-label="measured vs predicted"') == sum(r.drop_mib is not None for r in night.rows)
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org", "")  # nothing to fetch


def test_plots_are_placed_by_value(night):
    r = next(r for r in night.rows if r.predicted_mib and r.predicted_mib > 500)
    assert "circle" in interval_svg(r) and interval_svg(type(r)(test="t", phase=None, outcome="passed", duration_s=0)) == ""
    assert trend_svg([None]) == "" and "polyline" in trend_svg([0.0, -2.0, 1.0])


def test_history_page_writes_the_night_with_its_trend(tmp_path):
    from harness.cli import main

    db = str(tmp_path / "h.sqlite")
    data = NIGHT1.parent
    for d in (NIGHT1, data / "night-2"):
        assert main(["history", "ingest", str(d), "--db", db]) == 0
    out = tmp_path / "index.html"
    assert main(["history", "page", str(data / "night-3" / "merged"), "--db", db, "--out", str(out)]) == 0
    page = out.read_text()
    assert "nightly night-3" in page and "trend (3 nights)" in page
    assert page.count("<polyline") == 5  # every phase has three nights of errors
