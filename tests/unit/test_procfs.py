import pytest
from hypothesis import given, strategies as st

from harness.measure import procfs
from harness.measure.procfs import ProcParseError

# Captured from the Debian 6.1.0-50 guest (2 GiB, QEMU 7.2, TCG) right after boot.
BUDDYINFO_61 = """\
Node 0, zone      DMA      0      0      0      0      0      0      1      1      0      1      3 
Node 0, zone    DMA32      2      0      3      1      1      3      3      2      1      2    473 
"""
# The balloon device's features on that guest with free-page-reporting=on (bit 5).
FEATURES_ON = "0100010000000000000000000000110010000000100000000000000000000000"


def test_buddyinfo_61():
    dma, dma32 = procfs.parse_buddyinfo(BUDDYINFO_61)
    assert (dma.node, dma.zone, len(dma.free)) == (0, "DMA", 11)
    assert dma32.free[10] == 473
    # order >= 9: DMA 1*512+3*1024, DMA32 2*512+473*1024 pages
    assert procfs.free_mib_at_or_above([dma, dma32], 9) == pytest.approx((512 + 3072 + 1024 + 473 * 1024) * 4 / 1024)


def test_features_bits():
    bits = procfs.parse_virtio_features(FEATURES_ON)
    assert procfs.feature_bit(bits, procfs.VIRTIO_BALLOON_F_REPORTING)
    assert procfs.feature_bit(bits, procfs.VIRTIO_BALLOON_F_STATS_VQ)
    assert not procfs.feature_bit(bits, procfs.VIRTIO_BALLOON_F_FREE_PAGE_HINT)
    assert not procfs.feature_bit("01", 5)


def test_meminfo():
    m = procfs.parse_meminfo("MemTotal:        2030000 kB\nMemFree:  1900000 kB\nHugePages_Total:       0\n")
    assert m == {"MemTotal": 2030000, "MemFree": 1900000, "HugePages_Total": 0}


@pytest.mark.parametrize("text", ["", "Node 0, zone\n", "Node x, zone DMA 1 2\n", "garbage\n", "Node 0, zone DMA a b\n"])
def test_bad_buddyinfo(text):
    with pytest.raises(ProcParseError):
        procfs.parse_buddyinfo(text)


@pytest.mark.parametrize("text", ["", "0102", "abc"])
def test_bad_features(text):
    with pytest.raises(ProcParseError):
        procfs.parse_virtio_features(text)


@given(st.text())
def test_parsers_raise_only_parse_errors(text):
    for parse in (procfs.parse_buddyinfo, procfs.parse_virtio_features, procfs.parse_meminfo):
        try:
            parse(text)
        except ProcParseError:
            pass


# two lines of a 6.1 guest's /proc/slabinfo after reading 512 MiB of its disk (2026-12-07)
SLABINFO = """slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
buffer_head           39     39    104   39    1 : tunables    0    0    0 : slabdata      1      1      0
radix_tree_node     2422   2422    584   14    2 : tunables    0    0    0 : slabdata    173    173      0
"""


def test_slab_cache_pages():
    assert procfs.slab_cache_pages(SLABINFO, "radix_tree_node") == 346   # 173 slabs of 2 pages
    assert procfs.slab_cache_pages(SLABINFO, "buffer_head") == 1
    assert procfs.slab_cache_pages(SLABINFO, "kmalloc-8k") == 0
    assert procfs.slab_cache_pages("", "radix_tree_node") is None   # no /proc/slabinfo: the cat failed
    with pytest.raises(procfs.ProcParseError):
        procfs.slab_cache_pages("slabinfo - version: 2.1\nradix_tree_node 1 2 3\n", "radix_tree_node")
