"""`balloon-e2e run hint-migrate`: boot, migrate, judge; print measured vs predicted.

Exit codes as for every scenario: 0 within the prediction, 1 outside it or kept data lost,
3 a guest or QEMU failed (a destination that died after the switch-over included: its console
tail is printed), 130 interrupted.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from harness.errors import UserError

FIGURES = (("normal_pages", "normal"), ("duplicate_pages", "zero (duplicate)"))


def human(r: dict) -> str:
    lines = [f"scenario hint-migrate: {r['freed_mib']} MiB written non-zero and freed, {r['keep_mib']} MiB kept, "
             f"in a {r.get('memory_mib')} MiB guest",
             f"  guest {r.get('kernel')}, QEMU {r.get('qemu')}, hinting {'on' if r['hinting'] else 'off'} "
             f"(negotiated: {r.get('hinting_negotiated')}), reporting {'on' if r.get('reporting') else 'off'}"]
    if r["verdict"] in ("dead", "failed"):
        lines.append(f"  verdict: {r['verdict'].upper()}: {r.get('error', '')}")
        return "\n".join(lines)
    p, m = r["prediction"], r["measured"]
    lines.append(f"  {'migrated':<18} {'measured':>10} {'predicted [lo, hi]':>30}  verdict   (MiB; pages x 4 KiB)")
    for key, label in FIGURES:
        f = p[key.replace("_pages", "_mib")]
        lines.append(f"  {label:<18} {m[key] * 4096 / (1 << 20):>10.1f} {f['expected']:>10.1f} "
                     f"[{f['lo']:>8.1f}, {f['hi']:>8.1f}]  {r['checks'][key]}")
    for key, label in (("hinted_mib", "held by hints"), ("rss_rise_mib", "source RSS rise")):
        if m.get(key) is not None:
            f = p[key]
            lines.append(f"  {label:<18} {m[key]:>10.1f} {f['expected']:>10.1f} [{f['lo']:>8.1f}, {f['hi']:>8.1f}]  "
                         f"{r['checks'][key]}")
    lines.append(f"  hinted blocks per zone (taken, free order-10): {p['hinted_blocks']}; non-zero pages in them "
                 f"[min, nominal, max] {p['hinted_nonzero_pages']}, absent on the host {p['hinted_absent_pages']}")
    lines.append(f"  destination: {r.get('verified_pages')} kept pages verified, {r.get('mismatched_pages')} differ; "
                 f"MemFree after {r.get('dst_memfree_after_kib', 0) / 1024:.0f} MiB")
    d = r.get("destination_release")
    if d:
        lines.append(f"  destination release: drop {d.get('drop_mib')} MiB, predicted {d.get('predicted_mib')} "
                     f"[{d.get('predicted_lo_mib')}, {d.get('predicted_hi_mib')}] {d.get('verdict')}")
        lines += [f"    {why}" for why in ((d.get("judgement") or {}).get("failures") or [])]
    lines.append(f"  verdict: {r['verdict'].upper()}; terms of the normal-page interval (pages):")
    for t in p["normal_pages"]["terms"]:
        lines.append(f"    {t['name']:<22} [{t['lo']:+9.0f}, {t['hi']:+9.0f}]  {t['explanation']}")
    return "\n".join(lines)


def cmd_hint_migrate(a) -> int:
    from harness.vm.guest import Guest
    from harness.scenarios import hint_migrate

    import dataclasses

    from harness.cli import guest_config
    cfg = dataclasses.replace(guest_config(a), hinting=True if a.hinting is None else a.hinting)
    if a.mib >= cfg.memory_mib:
        raise UserError(f"--mib {a.mib} must be below the guest's memory ({cfg.memory_mib} MiB)")
    why = hint_migrate.unsupported(cfg)
    if why:
        raise UserError(why)
    def progress(m: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {m}", file=sys.stderr, flush=True)

    g = Guest.provisioned(cfg, start="boot")  # measured and modelled on booted guests
    try:
        g.launch()
        progress(f"source guest up in {g.boot_s:.1f} s (QEMU {g.qemu.version}, {g.image.kernel_release})")
        result = hint_migrate.run(g, mib=a.mib, progress=progress)
    finally:
        progress(f"source QEMU {g.shutdown()}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{time.strftime('%Y%m%d-%H%M%S')}-hint-migrate-{'on' if cfg.hinting else 'off'}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    if a.json:
        short = {k: v for k, v in result.items() if k not in ("state", "samples")}
        if isinstance(short.get("destination_release"), dict):  # its whole phase stays in the file
            short["destination_release"] = {k: v for k, v in short["destination_release"].items() if k != "result"}
        print(json.dumps(short))
    else:
        print(human(result))
    progress(f"result {stem}.json")
    return {"within": 0, "outside": 1, "lost": 1}.get(result["verdict"], 3)
