"""inflate: the classic balloon takes guest pages, the host gets back the ones it held; deflate gives nothing.

Steps (one guest): touch and free `mib` (a release phase: with reporting on it is
reported and discarded, with it off it stays resident) -> inflate by `balloon_mib`
(QMP balloon; query-balloon converges, BALLOON_CHANGE arrives) -> touch and free
`mib` again while inflated (reporting next to the balloon) -> deflate (RSS must not
rise: QEMU only MADV_WILLNEEDs the pages, and the guest frees them untouched).

Before inflating the guest's free blocks and the host's residency of each page are
captured (harness/perblock.capture); harness/model/balloon.predict_inflate says
from them how many held pages the balloon will take. After it, /proc/kpageflags'
KPF_OFFLINE names the pages the balloon really took: their residency before is
the exact measured hand-over, their residency after must be nil (4 KiB host pages).

record_*() do I/O; judge_*() are pure on the records (unit-tested on stored runs).
"""
from __future__ import annotations

import time

from harness.vm import balloon

from harness.measure import guestfacts, pagemap, perblock, procfs
from harness.model.balloon import FreeBlock, deflate_completes, hugetlb_discards, predict_inflate
from harness.verdict.prediction import NOISE_MIB
from harness.measure.snapshot import parse_pagetypeinfo, parse_zoneinfo
from harness.scenarios.common import measuring

MIB = 1 << 20
PAGE_KIB = 4


def _meminfo(guest) -> dict:
    return procfs.parse_meminfo(guest.run("cat /proc/meminfo").stdout)


def _balloon_vmstat(guest) -> dict:
    vm, _ = balloon.read_proc(guest)
    return {k: vm.get(k, 0) for k in ("balloon_inflate", "balloon_deflate", "balloon_migrate", "oom_kill")}


def _released_check(g, ranges, runs0):
    """The balloon's pages now, the host's residency, and the pages that left the balloon, are
    free in the guest, yet held: guest scan, then host read. Free pages the guest allocates
    between the two look held, so a page counts only if a second scan and read agree."""
    def once():
        flags = balloon.kpageflags(g)
        held = pagemap.read_held(g.pid, ranges)
        runs = balloon.offline_pfns(flags)
        free_released = balloon.intersect(balloon.minus(runs0, runs), balloon.free_pfns(flags))
        return runs, held, [p for s, e in free_released for p in range(s, e) if held[p]]
    runs, held, bad = once()
    if bad:
        _, _, again = once()
        bad = sorted(set(bad) & set(again))
    return runs, held, len(bad)


def record_inflate(r, target: int, what: str = "inflate", progress=lambda m: None) -> dict:
    """Capture, inflate (or deflate) to `target` bytes, settle, capture what the balloon holds."""
    g = r.g
    texts = guestfacts.snapshot_texts(g)
    vm0 = _balloon_vmstat(g)
    runs0 = balloon.balloon_runs(g)
    cap = perblock.capture(g, r.order, r.ranges, recheck=False)
    peak = r.s.latest()
    t0 = time.monotonic()
    progress(f"{what}: balloon to {target / MIB:.0f} MiB")
    m = balloon.move(g, target)
    after = r.settle(t0, f"RSS to settle after {what}")
    runs, held_after, free_held = _released_check(g, r.ranges, runs0)
    vm1 = _balloon_vmstat(g)
    mem1 = _meminfo(g)
    return {
        "phase": what, "target": target, "move": m.to_json(),
        "rss_peak_mib": round(peak.rss_mib, 1), "rss_after_mib": round(after.rss_mib, 1),
        "drop_mib": round(peak.rss_mib - after.rss_mib, 1),
        "ram_rss_peak_mib": round(peak.ram_rss_mib, 1), "ram_rss_after_mib": round(after.ram_rss_mib, 1),
        "ram_drop_mib": round(peak.ram_rss_mib - after.ram_rss_mib, 1),
        "memtotal_kb_before": procfs.parse_meminfo(texts["meminfo"])["MemTotal"], "memtotal_kb_after": mem1["MemTotal"],
        "vmstat_before": vm0, "vmstat_after": vm1,
        "balloon_runs_before": runs0, "balloon_runs": runs,
        "held_before_in_balloon": balloon.held_in_runs(cap.held, runs),
        "held_after_in_balloon": balloon.held_in_runs(held_after, runs),
        # pages that left the balloon (deflate) and are still free in the guest, yet held by the host
        "released_free_held": free_held,
        "samples": [[round(x.t - t0, 2), round(x.rss_mib, 1), round(x.ram_rss_mib, 1)] for x in r.s.since(t0)],
        "snapshot": {k: texts[k] for k in ("zoneinfo", "pagetypeinfo", "meminfo")},
        "capture_before": cap.to_json(),
    }


# --- pure: prediction and verdicts ----------------------------------------------

def model_inputs(ph: dict) -> dict:
    """The model's inputs from a recorded phase: free blocks x residency, MOVABLE counts, pcp."""
    cap = perblock.Capture.from_json(ph["capture_before"])
    blocks = [FreeBlock(b.zone, b.order, cap.held_in(b.head, b.end)) for b in cap.blocks]
    pt = parse_pagetypeinfo(ph["snapshot"]["pagetypeinfo"])
    movable = {}
    for (node, zone, mt), counts in pt.free.items():
        if mt == "Movable":
            for o, n in enumerate(counts):
                movable[(perblock.zone_label(node, zone), o)] = n
    per_cpu: dict[int, int] = {}
    for z in parse_zoneinfo(ph["snapshot"]["zoneinfo"]):
        if z.present and z.zone != "DMA":  # ZONE_DMA: never used by the balloon (lowmem_reserve)
            for p in z.pagesets:
                per_cpu[p.cpu] = per_cpu.get(p.cpu, 0) + p.count
    return {"blocks": blocks, "movable": movable, "pcp_max": max(per_cpu.values(), default=0)}


def judge_inflate(ph: dict, ram_bytes: int, host_page_size: int, metric: str = "rss",
                  deflate_on_oom: bool = False, noise_mib: float = NOISE_MIB) -> dict:
    """Predicted vs measured for one inflate phase; every check can fail both ways."""
    pages = balloon.pages_for(ram_bytes, ph["target"]) - balloon.pages_for(ram_bytes, _prev_actual(ph, ram_bytes))
    p = predict_inflate(**model_inputs(ph), pages=pages, host_page_size=host_page_size)
    pj = p.to_json(noise_mib)
    drop = ph["ram_drop_mib" if metric == "mapping" else "drop_mib"]
    got = balloon.run_pages(ph["balloon_runs"]) - balloon.run_pages(ph["balloon_runs_before"])
    held_before = ph["held_before_in_balloon"]
    memtotal_drop = ph["memtotal_kb_before"] - ph["memtotal_kb_after"]
    ev = ph["move"]["events"]
    checks = {
        # query-balloon reached the target exactly (move() waits for it) and the last event says so
        "converged": ph["move"]["converged_s"] is not None,
        "event_at_target": bool(ev) and ev[-1][1] == ph["target"],
        # the guest holds exactly the pages asked: kpageflags and its own vmstat counter
        "pages_in_balloon": got == pages,
        "vmstat_inflate": ph["vmstat_after"]["balloon_inflate"] - ph["vmstat_before"]["balloon_inflate"] == pages,
        # deflate-on-oom off: adjust_managed_page_count(-1) per page; on: MemTotal kept
        "memtotal": memtotal_drop == (0 if deflate_on_oom else pages * 4),
        # the exact hand-over (no RSS noise) inside the model's interval of held pages
        "held_within": p.held_lo <= held_before <= p.held_hi,
        # QEMU discarded every page it got (4 KiB), or none (hugetlbfs: and a guest write next
        # to a balloon page faults its whole 2 MiB page in, so more can be held after)
        "discarded": ph["held_after_in_balloon"] == 0 if p.discard else ph["held_after_in_balloon"] >= held_before,
        # without discard only "nothing came back" is claimed: the guest may fault in huge pages
        "rss_within": pj["lo_mib"] <= drop <= pj["hi_mib"] if p.discard else drop <= pj["hi_mib"],
    }
    return {"phase": ph["phase"], "pages": pages, "pages_in_balloon": got, "held_before_in_balloon": held_before,
            "held_after_in_balloon": ph["held_after_in_balloon"], "memtotal_drop_kb": memtotal_drop,
            "measured_mib": drop, "metric": metric, "prediction": pj, "checks": checks,
            "verdict": "within" if all(checks.values()) else "outside"}


def _prev_actual(ph: dict, ram_bytes: int) -> int:
    return ram_bytes - balloon.run_pages(ph["balloon_runs_before"]) * balloon.BALLOON_PAGE


def deflate_bound_mib(ph: dict) -> float:
    """The most RSS a deflate can give back (model.balloon.deflate_completes), from the capture
    and zoneinfo taken before it."""
    cap = perblock.Capture.from_json(ph["capture_before"])
    blocks = [(b.head, b.order, b.reported, cap.held_in(b.head, b.end)) for b in cap.blocks]
    released = balloon.minus(ph["balloon_runs_before"], ph["balloon_runs"])
    per_cpu: dict[int, int] = {}
    for z in parse_zoneinfo(ph["snapshot"]["zoneinfo"]):
        for p in (z.pagesets if z.present else ()):
            per_cpu[p.cpu] = per_cpu.get(p.cpu, 0) + p.count
    # the deflate runs on one CPU: update_balloon_size_func is a work item of the per-cpu
    # system_freezable_wq and queues itself again where it runs, so one CPU's lists drain
    pcp = max(per_cpu.values(), default=0)
    return deflate_completes(blocks, released, pcp, cap.order) * PAGE_KIB / 1024


def judge_deflate(ph: dict, deflate_on_oom: bool = False, metric: str = "rss", noise_mib: float = NOISE_MIB,
                  discard: bool = True, reports: bool = True) -> dict:
    """Deflate: pages leave the balloon, MemTotal comes back, RSS does not rise (noise only)
    nor drop by more than the held pages the deflate can complete into reportable blocks,
    and none of the released pages is held by the host."""
    released = balloon.run_pages(ph["balloon_runs_before"]) - balloon.run_pages(ph["balloon_runs"])
    rise = -ph["ram_drop_mib" if metric == "mapping" else "drop_mib"]
    bound = deflate_bound_mib(ph) if discard and reports else 0.0  # nothing reported, nothing discarded
    memtotal_rise = ph["memtotal_kb_after"] - ph["memtotal_kb_before"]
    ev = ph["move"]["events"]
    checks = {
        "converged": ph["move"]["converged_s"] is not None,
        "event_at_target": bool(ev) and ev[-1][1] == ph["target"],
        "vmstat_deflate": ph["vmstat_after"]["balloon_deflate"] - ph["vmstat_before"]["balloon_deflate"] == released,
        "memtotal": memtotal_rise == (0 if deflate_on_oom else released * 4),
        # MADV_WILLNEED faults nothing in: the released pages stay absent until touched
        # (hugetlbfs: nothing was discarded, so the released pages are as held as before)
        "released_not_held": ph["released_free_held"] == 0 if discard else True,
        # QEMU only MADV_WILLNEEDs the released pages: no rise; a drop up to what it completes
        "rss_flat": -noise_mib - bound <= rise <= noise_mib,
    }
    return {"phase": ph["phase"], "released": released, "rise_mib": rise, "memtotal_rise_kb": memtotal_rise,
            "drop_bound_mib": round(bound, 1),
            "released_free_held": ph["released_free_held"], "checks": checks,
            "verdict": "within" if all(checks.values()) else "outside"}


def judge(result: dict) -> list[dict]:
    """Verdicts of every balloon phase (result['balloon_verdicts']); result['verdict'] is
    within only if they and the release phases' (harness/verdict/prediction.py, run first) all are."""
    hp = result.get("host_page_size", 4096)
    metric = "mapping" if result.get("backend") == "hugetlbfs" else "rss"
    doo = bool(result.get("deflate_on_oom"))
    out = []
    for ph in result["balloon_phases"]:
        if ph["phase"].startswith("inflate"):
            out.append(judge_inflate(ph, result["memory_mib"] * MIB, hp, metric, doo))
        else:
            out.append(judge_deflate(ph, doo, metric, discard=hugetlb_discards(hp),
                                     reports=bool(result.get("reporting_negotiated", result.get("reporting")))))
    result["balloon_verdicts"] = out
    ok = all(v["verdict"] == "within" for v in out) and all(ph.get("verdict", "within") == "within"
                                                            for ph in result.get("phases", []))
    result["verdict"] = "within" if ok else "outside"
    return out


def human(result: dict) -> str:
    lines = [f"scenario inflate: balloon {result['balloon_mib']} MiB in a {result['memory_mib']} MiB guest; "
             f"guest {result['kernel']}, QEMU {result['qemu']}, backend {result['backend']}, reporting "
             f"{'on' if result['reporting'] else 'off'}, deflate-on-oom {'on' if result.get('deflate_on_oom') else 'off'}"]
    for ph in result.get("phases", []):
        lines.append(f"  release {ph['phase']:<14} freed {ph['freed_mib']:g} MiB: drop {ph['drop_mib']} MiB, predicted "
                     f"{ph['predicted_mib']} [{ph['predicted_lo_mib']}, {ph['predicted_hi_mib']}] {ph['verdict']}")
    for v in result.get("balloon_verdicts", []):
        if "prediction" in v:
            p = v["prediction"]
            lines.append(f"  {v['phase']:<8} {v['pages']} pages, {v['held_before_in_balloon']} of them held by the host "
                         f"(model: {p['held_expected']} in [{p['held_lo']}, {p['held_hi']}]); {v['metric']} drop "
                         f"{v['measured_mib']} MiB, predicted {p['expected_mib']} [{p['lo_mib']}, {p['hi_mib']}]; "
                         f"MemTotal -{v['memtotal_drop_kb']} kB; {v['verdict']}")
        else:
            lines.append(f"  {v['phase']:<8} {v['released']} pages back: RSS rise {v['rise_mib']} MiB, MemTotal "
                         f"+{v['memtotal_rise_kb']} kB, released pages held {v['released_free_held']}; {v['verdict']}")
        bad = [k for k, ok in v["checks"].items() if not ok]
        if bad:
            lines.append(f"    failed checks: {', '.join(bad)}")
    if result.get("qemu_subpage_warning"):
        lines.append("  QEMU: \"Balloon used with backing page size > 4kiB, this may not be reliable\"")
    if result.get("reported_again"):
        ra = result["reported_again"]
        lines.append(f"  after deflating: {ra['in_reported_blocks']} of the {ra['released_pages']} pages back "
                     "from the balloon lie in reported free blocks")
    lines.append(f"  verdict: {result['verdict'].upper()}")
    return "\n".join(lines)


# --- the scenario ---------------------------------------------------------------

def run(guest, mib: int = 256, balloon_mib: int = 256, progress=lambda m: None) -> dict:
    ram = guest.cfg.memory_mib * MIB
    with measuring(guest, progress) as r:
        before = r.idle
        r.ask(f"touch a {mib}")
        r.release("free", lambda: r.ask("free a"), mib, unmaps="a")
        phases = [record_inflate(r, ram - balloon_mib * MIB, "inflate", progress)]
        r.ask(f"touch b {mib // 2}")  # half: the inflated guest has less room
        r.release("free-inflated", lambda: r.ask("free b"), mib // 2, unmaps="b")
        phases.append(record_inflate(r, ram, "deflate", progress))
        reported_again = None
        if r.facts["reporting_negotiated"]:
            # the deflated pages are free guest pages again: reported again (not held, so no RSS)
            cap = perblock.wait_reported(guest, r.order, r.ranges)
            former = phases[-1]["balloon_runs_before"]
            inrep = sum(max(0, min(e, b.end) - max(s, b.head)) for b in cap.blocks if b.reported for s, e in former)
            reported_again = {"released_pages": balloon.run_pages(former), "in_reported_blocks": inrep}
        # QEMU warns once when it gets balloon pages smaller than its host pages (balloon_inflate_page)
        subpage_warning = "Balloon used with backing page size" in guest.qemu_log.read_text(errors="replace")
        return r.result("inflate", freed_mib=mib, qemu_subpage_warning=subpage_warning, balloon_mib=balloon_mib, rss_before_mib=round(before.rss_mib, 1),
                        idle_noise_mib=round(r.idle_noise, 1), deflate_on_oom=guest.cfg.deflate_on_oom,
                        balloon_phases=phases, reported_again=reported_again)
