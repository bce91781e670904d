"""Host side of a report (harness/model/discard.py) against QEMU hw/virtio/virtio-balloon.c
virtio_balloon_handle_report and softmmu/physmem.c ram_block_discard_range."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model.discard import HostConfig, ResidentMap, discard
from harness.model.errors import ModelError

MIB = 256  # pages


def resident_all(n=64 * MIB):
    return ResidentMap(n, resident=True)


def test_anon_private_gives_back_what_was_resident():
    res = ResidentMap(64 * MIB)
    res.set(0, 1024)
    res.set(2048, 100)
    d = discard([(0, 10), (1024, 10), (2048, 9)], HostConfig(), res)
    assert (d.rss_pages, d.mapping_pages, d.ignored_pages) == (1124, 1124, 0)
    assert res.total() == 0                         # MADV_DONTNEED: gone until touched again
    assert discard([(0, 10)], HostConfig(), res).rss_pages == 0


def test_memfd_shared_punches_and_rss_drops():
    d = discard([(0, 9)], HostConfig(backend="memfd"), resident_all())
    assert d.rss_pages == 512 and d.mapping_pages == 512


def test_hugetlbfs_2m_discards_only_aligned_whole_pages():
    # `if (!QEMU_IS_ALIGNED(ram_offset | size, qemu_ram_pagesize(rb)))` -> skip silently
    host = HostConfig(backend="hugetlbfs", page_size=2 << 20)
    d = discard([(0, 10), (1024, 9), (1536, 8), (2048 + 256, 8)], host, resident_all())
    assert d.mapping_pages == 1024 + 512 and d.ignored_pages == 512
    assert d.rss_pages == 0                         # hugetlb pages are not in Rss


def test_hugetlbfs_1g_ignores_every_2m_and_4m_report():
    host = HostConfig(backend="hugetlbfs", page_size=1 << 30)
    d = discard([(0, 10), (1024, 9), (262144, 10)], host, resident_all(2048 * MIB))
    assert d.mapping_pages == 0 and d.ignored_pages == 1024 + 512 + 1024


@pytest.mark.parametrize("host", [HostConfig(discard_inhibited=True), HostConfig(poison_val=0xAA)])
def test_inhibited_or_poisoned_discards_nothing(host):
    # virtio_balloon_inhibited() || dev->poison_val -> goto skip_element
    res = resident_all()
    d = discard([(0, 10)], host, res)
    assert d.rss_pages == 0 and d.ignored_pages == 1024 and res.total() == len(res)


@pytest.mark.parametrize("kw", [dict(backend="tmpfs"), dict(page_size=8192), dict(backend="hugetlbfs"),
                                dict(backend="anon", page_size=2 << 20)])
def test_bad_host_configs_are_refused(kw):
    with pytest.raises(ModelError):
        HostConfig(**kw)


def test_first_touch_faults_a_whole_thp_then_4k_after_a_split():
    res = ResidentMap(4 * MIB)
    res.touch(10, 1, granule=512)                   # fresh 2 MiB region: a THP
    assert res.count(0, 512) == 512
    res.clear(0, 256)                               # a partial discard splits it
    res.touch(5, 1, granule=512)                    # refault inside the split THP: 4K
    assert res.count(0, 512) == 257


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 300)), max_size=20),
       st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 300)), max_size=20))
def test_resident_map_ranges_and_counts_agree(sets, clears):
    res = ResidentMap(4400)
    ref = set()
    for p, n in sets:
        res.set(p, n)
        ref |= set(range(p, p + n))
    for p, n in clears:
        assert res.clear(p, n) == len(ref & set(range(p, p + n)))
        ref -= set(range(p, p + n))
    assert res.total() == len(ref)
    assert {p + i for p, n in res.ranges() for i in range(n)} == ref


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["touch", "clear"]), st.integers(0, 4400), st.integers(0, 700)),
                max_size=30),
       st.sampled_from([1, 8, 512]))
def test_touch_runs_is_touch_run_by_run(ops, granule):
    # touch_runs skips granules it knows are fully resident: clear() must forget them
    fast, slow = ResidentMap(4400), ResidentMap(4400)      # the last granule is partial
    for op, p, n in ops:
        if op == "clear":
            n = min(n, 4400 - p)
            assert fast.clear(p, n) == slow.clear(p, n)
            continue
        runs = [(q, min(m, 4400 - q)) for q, m in ((p, n), (p + n // 2, 1), (p // 2, n // 3 + 1)) if q < 4400]
        fast.touch_runs(runs, granule)
        for q, m in runs:
            slow.touch(q, m, granule)
        assert fast.bits == slow.bits


def test_ranges_outside_guest_ram_are_refused():
    with pytest.raises(ModelError):
        ResidentMap(100).set(90, 20)
