"""A model guest built from a Snapshot (harness/model/layout.py): same counts, a valid buddy state."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.model.errors import ModelError
from harness.model.kernel import kernel_spec
from harness.model.layout import build_machine
from harness.model.synth import fresh_machine, snapshot_of
from harness.model.buddy import MIGRATE_TYPES
from harness.snapshot import snapshot_from_capture

from test_model_buddy import check_invariants  # tests/unit is on sys.path (rootdir-less prepend import)

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "snapshots"


def load(kernel: str, stage: str):
    d = CAPTURES / kernel / stage
    return snapshot_from_capture({p.name: p.read_text() for p in d.iterdir()})


def counts_of(m, key):
    return m.zone(key).counts()


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
@pytest.mark.parametrize("stage", ["boot", "held", "freed"])
def test_real_capture_lays_out_with_the_same_counts(kernel, stage):
    snap = load(kernel, stage)
    spec = kernel_spec(snap.kernel)
    m, placed = build_machine(snap, spec)
    for z in snap.populated_zones():
        want = snap.free_counts(*z.key)
        got = counts_of(m, f"{z.node}/{z.zone}")
        for mt in range(MIGRATE_TYPES):
            for o in range(spec.nr_orders):
                assert got[o][mt] == want.get(mt, (0,) * spec.nr_orders)[o]
        zz = m.zone(f"{z.node}/{z.zone}")
        check_invariants(zz)
        assert zz.free_pages == sum(n << o for o, row in enumerate(got) for n in row)
        # free blocks sit in pageblocks of their own type (putback files by pageblock)
        for pfn, o, mt, _ in zz.free_blocks():
            assert zz.pageblock_mt(pfn) == mt


def test_reported_counts_go_to_the_tail():
    snap = load("6.1", "freed")
    spec = kernel_spec(snap.kernel)
    rep = {(0, "DMA32"): {1: [0] * 10 + [200]}}
    m, placed = build_machine(snap, spec, rep)
    lst = list(m.zone("0/DMA32").lists[10][1].values())
    assert sum(lst) == 200 and lst == sorted(lst)         # False... then True...


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([256, 1024, 3072]), st.lists(st.integers(1, 64), max_size=6), st.integers(0, 3))
def test_model_snapshot_round_trips(mib, touches, frag_every):
    """Any model guest's snapshot lays out again with identical counts."""
    from harness.model.trace import Fragment, Simulation, touch
    m = fresh_machine("6.1", mib)
    sim = Simulation(m, threshold=9)
    t = 1.0
    for i, n in enumerate(touches):
        if n * 256 < m.free_pages() // 2:
            sim.run([touch(t, f"t{i}", n)] + ([Fragment(t + 0.1, f"t{i}", keep_every=frag_every + 1)]
                                              if frag_every else []), until=t + 0.5)
            t += 1
    sim.run([])
    snap = snapshot_of(m, "6.1", 9)
    m2, _ = build_machine(snap, m.spec)
    for z in m.zones:
        assert m2.zone(z.key).counts() == z.counts()
        check_invariants(m2.zone(z.key))


def test_too_many_free_blocks_for_the_span_is_an_error():
    snap = load("6.1", "boot")
    from dataclasses import replace
    zones = tuple(replace(z, spanned=z.spanned // 4) if z.zone == "DMA32" else z for z in snap.zones)
    with pytest.raises(ModelError):
        build_machine(replace(snap, zones=zones), kernel_spec("6.1"))
