"""deflate-on-oom: memory pressure past an inflated balloon, with the feature on or off.

The balloon is inflated by `mib`, then a workload touches what the guest has
available plus OVER_MIB (4 KiB pages, oom_score_adj 1000 so that the OOM killer, if it
acts, picks it and not sshd). Linux drivers/virtio/virtio_balloon.c:
- on (VIRTIO_BALLOON_F_DEFLATE_ON_OOM): virtio_balloon_oom_notify, an OOM notifier,
  leaks VIRTIO_BALLOON_OOM_NR_PAGES = 256 pages (1 MiB) per global out_of_memory() call,
  which then kills nothing (mm/oom_kill.c: freed > 0 returns). The guest writes the
  new actual; query-balloon rises by what was deflated. MemTotal never dropped.
- off: the OOM killer acts; the balloon keeps every page.
Asserted on the balloon and vmstat counters (balloon_deflate, oom_kill), not on which
process died.
"""
from __future__ import annotations

import re

from harness.vm import balloon
from harness.errors import GuestError
from harness.vm.guest import FAULTS
from harness.scenarios.common import measuring

MIB = 1 << 20
OVER_MIB = 64
OOM_NR_PAGES = 256  # VIRTIO_BALLOON_OOM_NR_PAGES


def unexpected_faults(console: str) -> list[str]:
    """Pure: console lines that mean a kernel fault, leaving out the OOM killer's own report
    (mm/oom_kill.c dump_header: "... invoked oom-killer" ... "Out of memory: Killed process"),
    whose stack dump carries a "Call Trace" the suite otherwise treats as a fault."""
    bad, in_report = [], False
    for line in console.splitlines():
        if "invoked oom-killer" in line:
            in_report = True
        elif re.search(r"Out of memory: Killed process|oom_reaper:", line):
            in_report = False
        elif FAULTS.search(line) and not in_report:
            bad.append(line.strip())
    return bad


def _healthy(guest) -> None:
    """Guest.check_healthy, except that an OOM kill is what this scenario asks for."""
    bad = unexpected_faults(guest.console_tail(100000))
    if bad or not guest.alive():
        raise GuestError(f"guest kernel fault: {bad[0]}" if bad else f"QEMU exited ({guest.proc.poll()})")


def run(guest, mib: int = 256, progress=lambda m: None) -> dict:
    ram = guest.cfg.memory_mib * MIB
    with measuring(guest, progress) as r:
        mem_start = balloon.read_proc(guest)[1]
        m = balloon.move(guest, ram - mib * MIB)
        vm0, mem0 = balloon.read_proc(guest)
        actual0 = balloon.actual(guest)
        need = mem0["MemAvailable"] // 1024 + OVER_MIB
        progress(f"deflate-on-oom: touching {need} MiB, {OVER_MIB} MiB past what the guest has available")
        balloon.events(guest)
        w = guest.run(f"echo 1000 > /proc/self/oom_score_adj; printf 'touch p {need} nohuge\\nquit\\n' | e2emem",
                      check=False, timeout=240)
        vm1, mem1 = balloon.read_proc(guest)
        actual1 = balloon.actual(guest)
        ev = balloon.wait_event(guest, actual1)
        guest.check_healthy = lambda: _healthy(guest)  # for r.result() below (common.Run.result)
        keys = ("balloon_inflate", "balloon_deflate", "oom_kill", "pgscan_direct", "allocstall_dma32")
        return r.result(
            "deflate-on-oom", balloon_mib=mib, deflate_on_oom=guest.cfg.deflate_on_oom, over_mib=OVER_MIB,
            touch_mib=need, inflate=m.to_json(), workload_status=w.status, workload_out=w.stdout[-200:],
            memtotal_kb={"start": mem_start["MemTotal"], "inflated": mem0["MemTotal"], "end": mem1["MemTotal"]},
            mem_before={k: mem0[k] for k in ("MemFree", "MemAvailable")},
            vmstat_before={k: vm0.get(k, 0) for k in keys}, vmstat_after={k: vm1.get(k, 0) for k in keys},
            actual_before=actual0, actual_after=actual1, events=[[e.t, e.actual] for e in ev],
            console_oom=_oom_report(guest.console_tail(100000)))


def _oom_report(console: str, limit: int = 150) -> list[str]:
    """The console from the first OOM killer report on (kept for the record and the unit tests)."""
    lines = console.splitlines()
    start = next((i for i, x in enumerate(lines) if "invoked oom-killer" in x), None)
    return [] if start is None else lines[start:start + limit]


def judge(result: dict) -> dict:
    on = result["deflate_on_oom"]
    d = {k: result["vmstat_after"][k] - result["vmstat_before"][k] for k in result["vmstat_after"]}
    deflated = d["balloon_deflate"]
    pages = result["balloon_mib"] * 256
    mt = result["memtotal_kb"]
    checks = {
        "inflated": result["inflate"]["converged_s"] is not None and result["actual_before"] == (result["memory_mib"] - result["balloon_mib"]) * MIB,
        # query-balloon moved by exactly what the guest says it deflated
        "actual_follows_deflate": result["actual_after"] - result["actual_before"] == deflated * balloon.BALLOON_PAGE,
        # MemTotal: unchanged with the feature on; down by exactly the balloon with it off
        "memtotal": mt["inflated"] == mt["start"] - (0 if on else pages * 4) and mt["end"] == mt["inflated"],
    }
    if on:
        checks.update({
            "deflated": deflated > 0,
            "whole_oom_steps": deflated % OOM_NR_PAGES == 0,  # only the OOM notifier deflated
            "no_oom_kill": d["oom_kill"] == 0,
            "workload_survived": result["workload_status"] == 0,
            "event_rise": bool(result["events"]) and result["events"][-1][1] == result["actual_after"],
        })
    else:
        checks.update({"kept": deflated == 0, "oom_killed": d["oom_kill"] >= 1})
    result["oom_checks"] = checks
    result["oom_deltas"] = d
    result["deflated_mib"] = deflated / 256
    result["verdict"] = "within" if all(checks.values()) else "outside"
    return checks


def human(result: dict) -> str:
    d = result["oom_deltas"]
    lines = [f"scenario deflate-on-oom ({'on' if result['deflate_on_oom'] else 'off'}): balloon {result['balloon_mib']} "
             f"MiB in a {result['memory_mib']} MiB guest; guest {result['kernel']}, QEMU {result['qemu']}",
             f"  workload touched {result['touch_mib']} MiB ({result['over_mib']} past MemAvailable): exit "
             f"{result['workload_status']}",
             f"  balloon_deflate +{d['balloon_deflate']} pages ({result['deflated_mib']:g} MiB), oom_kill +{d['oom_kill']}, "
             f"actual {result['actual_before'] // MIB} -> {result['actual_after'] // MIB} MiB, MemTotal "
             f"{result['memtotal_kb']['start']} -> {result['memtotal_kb']['inflated']} kB"]
    bad = [k for k, ok in result["oom_checks"].items() if not ok]
    if bad:
        lines.append(f"  failed checks: {', '.join(bad)}")
    lines.append(f"  verdict: {result['verdict'].upper()}")
    return "\n".join(lines)
