"""hint-migrate: free page hinting proved through a live migration to a second QEMU.

Steps (all waits are conditions with deadlines):
1. The source guest (free-page-hint on or off, its iothread) fills KEEP MiB with a
   checksummed pattern, writes a non-zero pattern over MIB MiB and frees it; the workload is
   detached from SSH (migration.DetachedWorkload) so it survives the switch-over.
2. Once QEMU's RSS is stable, the state before the migration: the guest's free blocks
   (kpageflags) with zoneinfo, the host's residency of every page of guest RAM (pagemap) and
   which resident pages are non-zero (a host read of QEMU's memory), the other RAM blocks.
3. A destination QEMU with the same argv plus -incoming unix:PATH; `migrate` with the
   bandwidth throttled (THROTTLE_BPS) until the guest has stopped hinting, then unthrottled.
   query-migrate and both RSS are sampled every SAMPLE_S; both consoles and processes are
   watched the whole time: a dead or faulting guest on either side ends the run with
   verdict `dead` and the console tail.
4. After the switch-over: SSH to the destination, every kept page verified, and with
   reporting on one release measured on the destination like any phase (common.Run).
"""
from __future__ import annotations

import re
import time

from harness.measure import guestfacts, hostmem, pagemap, perblock, procfs

from harness.verdict import hint_prediction

from harness.vm import migration
from harness.errors import GuestError
from harness.model.errors import ModelError
from harness.measure.pagemap import RamRange
from harness.measure.procfs import ProcParseError
from harness.scenarios.common import measuring

# Throttle of the first round while the guest hints: 32 KiB/s lets QEMU's scan send at most
# 32768 / 9 = 3641 zero pages (8 + 1 B each) or 8 normal pages per second, so the hints (the
# guest allocates and queues ~4 MiB blocks at hundreds of MiB/s under TCG) arrive before the
# scan reaches their pages; the scenario records how far the scan got (the model's
# scanned_before_hints term).
THROTTLE_BPS = 32 << 10
UNLIMITED_BPS = 100 << 30
SAMPLE_S = 0.1
# The guest has stopped hinting when `remaining` fell by less than the throttled scan alone
# could clear over HINT_QUIET_S: 3641 pages/s x 4096 B x 3 s = 42.7 MiB on 7.2; 10.0 let ~550
# pages/s through (6.6 MiB in 3 s). Hints arrived at 120-180 MiB/s here, so a 3 s lull means
# the guest is done even when another guest shares the two cores (the runs of tests/data used 2 s).
HINT_QUIET_S = 3.0
HINT_QUIET_DROP = 48 << 20
HINT_PHASE_TIMEOUT_S = 90.0
MIGRATION_TIMEOUT_S = 300.0
SEED = 20261201


class GuestDied(GuestError):
    """A guest (source or destination) died or faulted: the worst outcome, never a skip."""


def _watch(*guests) -> None:
    for g in guests:
        try:
            g.check_healthy()
        except GuestError as e:
            raise GuestDied(f"{g.__class__.__name__.lower()}: {e}") from None


def _field(reply: str, key: str) -> int:
    m = re.search(rf"\b{key}=(\d+)", reply)
    if not m:
        raise GuestError(f"no {key}= in workload reply {reply!r}")
    return int(m.group(1))


def _memfree_kib(g) -> int:
    return int(re.search(r"MemFree:\s+(\d+)", g.run("cat /proc/meminfo").stdout).group(1))


def pre_migration_state(g, run) -> dict:
    """The model's input, read right before `migrate` (JSON-serializable)."""
    cap = perblock.capture(g, run.order, run.ranges, recheck=False)
    pages = g.cfg.memory_mib << 8
    hva0 = g.ram_hva(0)
    whole = [RamRange(0, pages, hva0)]  # the RAM block as migration scans it (offset = guest pfn below 4 GiB)
    held = pagemap.read_held(g.pid, whole)
    nz = migration.nonzero_pages(g.pid, hva0, pages, held)
    blocks = migration.parse_ramblocks(g.hmp("info ramblock"))
    auto_init = g.run("dmesg | grep -m1 'mem auto-init' || true").stdout.strip()
    return {
        "capture": cap.to_json(),
        "zoneinfo": cap.text.split("== zoneinfo")[1].split("\n", 1)[1].split("\n== ")[0],
        "ram_pages": pages,
        "held_runs": [[m.start(), m.end() - m.start()] for m in re.finditer(rb"\x01+", bytes(held))],
        "nonzero_runs": [[m.start(), m.end() - m.start()] for m in re.finditer(rb"\x01+", bytes(nz))],
        "ramblocks": [[b.name, b.used_bytes] for b in blocks],
        "info_ramblock": g.hmp("info ramblock"),
        "mem_auto_init": auto_init,
        "memfree_kib": _memfree_kib(g),
    }


def unsupported(cfg) -> str | None:
    """Why the scenario cannot run this config, or None. The host reads of guest RAM take the
    RAM block as one mapping whose offsets are guest pfns: true below the PCI hole (<= 2 GiB
    on q35), with one backend (one NUMA node), anonymous (pagemap shows its residency)."""
    if cfg.numa_nodes != 1 or cfg.memory_mib > 2048 or cfg.backend != "anon":
        return "hint-migrate needs one NUMA node, at most 2048 MiB and the anon backend"
    return None


def run(guest, mib: int = 256, keep_mib: int = 64, progress=lambda m: None, throttle_bps: int = THROTTLE_BPS) -> dict:
    """throttle_bps: the first round's bandwidth while the guest hints (0: none, QEMU's default)."""
    if why := unsupported(guest.cfg):
        raise GuestError(why)
    with measuring(guest, progress) as r:
        wl = migration.DetachedWorkload(guest)
        wl.ask(f"fill keep {keep_mib} {SEED}")
        wl.ask(f"touch churn {mib}")
        wl.ask("free churn")
        progress(f"freed {mib} MiB (non-zero pattern), {keep_mib} MiB kept; waiting for RSS to settle")
        r.settle(time.monotonic(), "RSS to settle after the free")
        progress("reading the state before the migration (free blocks, host residency and contents)")
        state = pre_migration_state(guest, r)
        facts = _facts(guest, r)  # before: a migrated source is paused and answers no SSH
        dst = migration.Destination(guest, progress)
        try:
            out = _migrate(guest, dst, r, wl, state, mib, keep_mib, progress, throttle_bps)
            out.update(facts)
            if out["verdict"] == "measured":
                out.update(hint_prediction.predict(out))
                lost = hint_prediction.integrity_verdict(out)
                if lost:
                    out.update(verdict="lost", error=lost)
                elif guest.cfg.reporting:
                    out["destination_release"] = _destination_release(dst, mib, progress)
                    if out["destination_release"]["verdict"] != "within":
                        out["verdict"] = "outside"
        finally:
            how = dst.shutdown()
    out["destination_shutdown"] = how
    return out


def _facts(g, r) -> dict:
    bits = guestfacts.balloon_features(g)
    return {"accel": g.cfg.accel, "kernel": g.image.kernel_release, "qemu": g.qemu.version,
            "memory_mib": g.cfg.memory_mib, "smp": g.cfg.smp, "reporting": g.cfg.reporting,
            "backend": g.cfg.backend, "host_page_size": g.cfg.host_page_size, "numa_nodes": g.cfg.numa_nodes,
            "host_thp": g.cfg.host_thp, **r.facts, "boot_s": round(g.boot_s, 2),
            "hinting_negotiated": procfs.feature_bit(bits, procfs.VIRTIO_BALLOON_F_FREE_PAGE_HINT),
            "idle_noise_mib": round(r.idle_noise, 1)}


def _destination_release(dst, mib: int, progress) -> dict:
    """The migrated guest still reports: touch and free `mib` MiB on the destination, measured
    and predicted like a touch-free phase (harness/verdict/prediction.py)."""
    from harness.verdict import prediction
    with measuring(dst, progress) as r2:
        r2.ask(f"touch churn2 {mib}")
        r2.release("dest-free", lambda: r2.ask("free churn2"), mib, unmaps="churn2")
        sub = r2.result("touch-free", freed_mib=mib)
    try:
        prediction.predict(sub)
    except (ProcParseError, ModelError) as e:
        return {"verdict": "model-failed", "error": str(e)}
    keep = ("drop_mib", "predicted_mib", "predicted_lo_mib", "predicted_hi_mib", "seconds_to_90pct",
            "predicted_seconds_to_90pct", "rss_peak_mib", "rss_after_mib", "terms", "per_block")
    ph = sub["phases"][-1]
    # the phase's figures, why it was judged so (each check's line), and the whole result for a
    # replay (balloon-e2e predict)
    return {**{k: ph[k] for k in keep if k in ph}, "verdict": sub["verdict"],
            "reporting_negotiated": sub.get("reporting_negotiated"), "judgement": ph.get("judgement"),
            "end": ph.get("end"), "worker_wait_s": ph["pre"].get("worker_wait_s"), "result": sub}


def _migrate(src, dst, r, wl, state, mib, keep_mib, progress, throttle_bps) -> dict:
    res = {"scenario": "hint-migrate", "freed_mib": mib, "keep_mib": keep_mib, "hinting": src.cfg.hinting,
           "state": state, "throttle_bps": throttle_bps}
    dst.launch()
    dst_proc = hostmem.psutil.Process(dst.pid)
    dst_hva = dst.ram_hva(0)
    samples: list[migration.MigrationSample] = []

    def take(t0):
        s = migration.sample(src, t0)
        try:
            d = hostmem.sample(dst_proc, dst_hva).ram_rss_mib
        except (OSError, LookupError, hostmem.psutil.Error):
            d = None
        s = migration.MigrationSample(**{**s.__dict__, "src_ram_rss_mib": round(r.s.latest().ram_rss_mib, 1),
                                          "dst_ram_rss_mib": None if d is None else round(d, 1)})
        samples.append(s)
        return s

    if throttle_bps:
        src.qmp_cmd("migrate-set-parameters", **{"max-bandwidth": throttle_bps})
    rss0 = r.s.latest()
    progress(f"migrating to {dst.incoming} (throttled to {throttle_bps >> 10} KiB/s while the guest hints)")
    t0 = time.monotonic()
    src.qmp_cmd("migrate", uri=dst.incoming)
    res["verdict"] = "dead"  # until proven otherwise
    try:
        deadline = t0 + HINT_PHASE_TIMEOUT_S
        while True:
            s = take(t0)
            _watch(src, dst)
            if s.status in migration.TERMINAL:
                break
            if migration.hint_phase_over(samples, HINT_QUIET_S, HINT_QUIET_DROP):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the guest was still hinting after {HINT_PHASE_TIMEOUT_S:.0f} s")
            time.sleep(SAMPLE_S)  # the sampling period of query-migrate
        hint_end = samples[-1]
        memfree_hinting = _memfree_kib(src) if s.status == "active" else None
        rss_hint = r.s.latest()
        progress(f"hint phase over after {hint_end.t:.1f} s; unthrottled")
        src.qmp_cmd("migrate-set-parameters", **{"max-bandwidth": UNLIMITED_BPS})
        deadline = time.monotonic() + MIGRATION_TIMEOUT_S
        while s.status not in migration.TERMINAL:
            time.sleep(SAMPLE_S)
            s = take(t0)
            _watch(src, dst)
            if time.monotonic() > deadline:
                raise TimeoutError(f"migration still {s.status} after {MIGRATION_TIMEOUT_S:.0f} s")
        final = src.qmp_cmd("query-migrate")
        res.update({
            "migration_status": s.status, "migration_final": final, "samples": migration.as_json(samples),
            "hint_end": migration.as_json([hint_end])[0],
            "memfree_before_kib": state["memfree_kib"], "memfree_hinting_kib": memfree_hinting,
            "src_ram_rss_before_mib": round(rss0.ram_rss_mib, 1), "src_ram_rss_hinting_mib": round(rss_hint.ram_rss_mib, 1),
            "src_rss_rise_mib": round(rss_hint.ram_rss_mib - rss0.ram_rss_mib, 1),
            "hinted_drop_mib": round(migration.hinted_drops(samples) / migration.MIB, 1),
        })
        if s.status != "completed":
            res["verdict"] = "failed"
            res["error"] = final.get("error-desc", s.status)
            return res
        progress("switched over; checking the destination guest")
        st = dst.qmp_cmd("query-status")
        wait_until = time.monotonic() + 30
        while st["status"] != "running":
            _watch(dst)
            if time.monotonic() > wait_until:
                raise GuestDied(f"destination stayed {st['status']!r} after the switch-over\n"
                                f"console (tail):\n{dst.console_tail(40)}")
            time.sleep(0.1)  # poll of the destination's run state
            st = dst.qmp_cmd("query-status")
        try:
            dst.attach()
            wl.use(dst)
            verify = wl.ask("verify keep")
            res.update(verified_pages=_field(verify, "pages"), mismatched_pages=_field(verify, "bad"),
                       dst_memfree_after_kib=_memfree_kib(dst))
        except GuestError as e:  # a destination that stops answering after the switch-over died
            _watch(dst)
            raise GuestDied(f"destination: {e}") from None
        _watch(dst)
        res["verdict"] = "measured"  # the model's verdict replaces it (harness/model/hinting.py)
    except GuestDied as e:
        res.update(verdict="dead", error=str(e), samples=migration.as_json(samples),
                   src_console_tail=src.console_tail(40), dst_console_tail=dst.console_tail(40))
    return res
