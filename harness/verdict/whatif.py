"""The bitmap what-if on a saved result: the merged design's prediction (harness/verdict/prediction.py)
next to seed 001's bitmap design (harness/model/bitmap.py), for the result's last phase. Pure."""
from __future__ import annotations

from harness.model import bitmap
from harness.measure.perblock import Capture
from harness.measure.phase import main_phase
from harness.measure.snapshot import parse_zoneinfo


def bitmap_whatif(result: dict, params: bitmap.BitmapParams = bitmap.BitmapParams()) -> dict:
    """result: judged (prediction.predict), so its main phase carries the merged prediction."""
    phase = main_phase(result)
    merged = phase
    if "captures" not in phase:
        raise ValueError("the bitmap what-if needs the phase's per-block captures (results since per-block truth)")
    cap = Capture.from_json(phase["captures"]["freed"])
    zones = [bitmap.ZoneSpan(z.zone if z.node == 0 else f"{z.zone}@node{z.node}", z.spanned, z.present)
             for z in parse_zoneinfo(phase["snapshots"]["freed"]["zoneinfo"]) if z.populated]
    b = bitmap.predict(cap.blocks, cap.held, zones, params)
    return {"bitmap": b.to_json(), "differences": bitmap.compare(merged["predicted_curve"], merged["predicted_mib"], b)}
