"""Seed 001's bitmap design as a what-if, on a stored real touch-free run (6.1, QEMU 7.2.22,
2 GiB guest, 1 GiB freed; tests/data/release/touch_free_6.1_on.json) and on planted cases."""
import json
from pathlib import Path

from harness.verdict import prediction
from harness.model import bitmap
from harness.measure.perblock import Block
from harness.verdict.whatif import bitmap_whatif

RUN = Path(__file__).parent.parent / "data" / "release" / "touch_free_6.1_on.json"


def test_same_blocks_as_the_merged_design_all_at_once():
    r = json.loads(RUN.read_text())
    prediction.predict(r)
    merged = r["phases"][-1]
    w = bitmap_whatif(r)
    assert abs(w["bitmap"]["reported_mib"] - merged["predicted_mib"]) < 8  # the same resident blocks
    assert w["bitmap"]["curve"] == [[0.0, w["bitmap"]["reported_mib"]]]  # one scan, no 2 s delay, no budget
    assert merged["predicted_seconds_to_90pct"] > 6  # the merged design's budget-limited passes
    assert any("never recorded" in line for line in w["differences"])


def _blocks(n, order=9, zone="DMA32", start=1 << 15):
    return [Block(start + (i << order), order, False, zone) for i in range(n)]


def test_threshold_keeps_small_releases_unreported():
    held = bytearray(1 << 20)
    few = _blocks(15)
    for b in few:
        held[b.head:b.end] = b"\1" * b.pages
    zones = [bitmap.ZoneSpan("DMA32", 1 << 20, 1 << 20)]
    p = bitmap.predict(few, held, zones)
    assert p.reported_mib == 0 and p.below_threshold == ("DMA32",)
    more = _blocks(16)
    held[more[-1].head:more[-1].end] = b"\1" * 512
    assert bitmap.predict(more, held, zones).reported_mib == 32.0


def test_unheld_free_blocks_are_never_recorded():
    blocks = _blocks(20)
    held = bytearray(1 << 20)  # nothing held: all free since before the release
    p = bitmap.predict(blocks, held, [bitmap.ZoneSpan("DMA32", 1 << 20, 1 << 20)])
    assert p.reported_mib == 0 and p.unrecorded_free_mib == 40.0


def test_sparse_zone_pays_for_its_span():
    # a zone spanning 64 GiB with 1 GiB present: 4 KiB of bitmap for 256 present 2 MiB blocks
    p = bitmap.predict([], bytearray(16), [bitmap.ZoneSpan("Normal", 16 << 20, 1 << 18)])
    assert p.bitmap_bytes == {"Normal": 4097} and p.present_share == {"Normal": 0.016}
