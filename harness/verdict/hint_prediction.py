"""hint-migrate: measured -> predicted -> verdict. Pure: a result dict (as the scenario returns
it, or as saved in results/*.json) in, prediction fields out; the model is harness/model/hinting.py."""
from __future__ import annotations

from harness.model import hinting
from harness.measure.perblock import Capture
from harness.measure.snapshot import parse_zoneinfo

# The idle guest RAM mapping's RSS noise: the measured idle noise of the run (max - min over
# 5 s), twice (a rise is the difference of two samples), and at least prediction.NOISE_MIB.
MIN_NOISE_MIB = 5.0
# MemFree while hinting vs before: besides the hinted blocks, the guest's own allocations move
# it. Measured: 0.0 MiB in both hinting-off runs of tests/data/hint_migrate/, and the on runs
# within 0.2 MiB of the blocks; 8 MiB is the per-cpu lists' reach (pcp high 1-4 MiB per zone
# and CPU here), pages that can leave or join NR_FREE_PAGES without any workload.
ALLOC_NOISE_MIB = 8.0


def _runs_to_bytes(runs, n: int) -> bytes:
    out = bytearray(n)
    for start, k in runs:
        out[start:start + k] = b"\1" * k
    return bytes(out)


def pre_migration(result: dict) -> hinting.PreMigration:
    st = result["state"]
    n = st["ram_pages"]
    cap = Capture.from_json(st["capture"])
    by_zone: dict[str, list[int]] = {}
    for b in cap.blocks:
        if b.order == hinting.HINT_ORDER:
            by_zone.setdefault(b.zone, []).append(b.head)
    zinfo = {z.zone: z for z in parse_zoneinfo(st["zoneinfo"]) if z.node == 0 and z.populated}
    zones = []
    for name in hinting.ZONELIST:
        if name in zinfo:
            z = zinfo[name]
            reserve = z.protection[hinting.ZONE_NORMAL] if len(z.protection) > hinting.ZONE_NORMAL else 0
            zones.append(hinting.HintZone(name, z.free, z.min, reserve, tuple(sorted(by_zone.get(name, ())))))
    main = max(b[1] for b in st["ramblocks"])
    other = sum(-(-b[1] // 4096) for b in st["ramblocks"]) - -(-main // 4096)
    return hinting.PreMigration(
        ram_pages=n, other_ram_pages=other,
        nonzero=_runs_to_bytes(st["nonzero_runs"], n), held=_runs_to_bytes(st["held_runs"], n),
        zones=tuple(zones), init_on_alloc="heap alloc:on" in st["mem_auto_init"])


def measured(result: dict) -> dict:
    ram = result["migration_final"]["ram"]
    return {"normal_pages": ram["normal"], "duplicate_pages": ram["duplicate"],
            "dirty_sync_count": ram["dirty-sync-count"],
            "hinted_mib": round((result["memfree_before_kib"] - result["memfree_hinting_kib"]) / 1024, 1)
            if result.get("memfree_hinting_kib") is not None else None,
            "rss_rise_mib": result["src_rss_rise_mib"]}


def predict(result: dict) -> dict:
    """Prediction and verdict fields for a hint-migrate result that completed."""
    s = pre_migration(result)
    m = measured(result)
    total = s.ram_pages + s.other_ram_pages
    hint_end = result["hint_end"]
    scanned = hint_end["normal_pages"] + hint_end["duplicate_pages"]
    noise = max(MIN_NOISE_MIB, 2 * result.get("idle_noise_mib", 0.0))
    # Pages sent beyond one pass over all RAM blocks; with init_on_alloc each hinted page is
    # cleared in round 1 and sent in round 2, so it is part of the one pass either way.
    first = hinting.predict(s, result["hinting"], resent_pages=0, scanned_at_hint_end=scanned,
                            noise_mib=noise, alloc_noise_mib=ALLOC_NOISE_MIB)
    one_pass = total if (not result["hinting"] or s.init_on_alloc) else total - first.hinted.pages
    resent = max(0, m["normal_pages"] + m["duplicate_pages"] - one_pass)
    p = hinting.predict(s, result["hinting"], resent_pages=resent, scanned_at_hint_end=scanned,
                        noise_mib=noise, alloc_noise_mib=ALLOC_NOISE_MIB)
    checks = {
        "normal_pages": p.normal.judge(m["normal_pages"]),
        "duplicate_pages": p.duplicate.judge(m["duplicate_pages"]),
        "rss_rise_mib": p.rss_rise_mib.judge(m["rss_rise_mib"]),
    }
    if m["hinted_mib"] is not None:
        checks["hinted_mib"] = p.hinted_mib.judge(m["hinted_mib"])
    return {"prediction": p.to_json(), "measured": m, "checks": checks,
            "verdict": "within" if all(v == "within" for v in checks.values()) else "outside"}


def integrity_verdict(result: dict) -> str | None:
    """Why the destination failed the integrity checks, or None."""
    if result.get("mismatched_pages", 1) != 0:
        return f"{result.get('mismatched_pages')} kept pages differ on the destination"
    if result.get("verified_pages", 0) != result["keep_mib"] * 256:
        return f"verified {result.get('verified_pages')} kept pages, expected {result['keep_mib'] * 256}"
    return None
