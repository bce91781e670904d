"""pagemap: the guest RAM layout, the entry decoding, and real reads of this process's own pagemap."""
import ctypes
import gc
import mmap
import os
import struct

import pytest
from hypothesis import given, strategies as st

from harness.measure import pagemap
from harness.measure.pagemap import PAGE, RamRange

# /proc/iomem of the Debian 6.1 guest (q35, 2 GiB), read as root.
IOMEM_Q35_2G = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000c0000-000c05ff : Video ROM
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  09600000-0a401d31 : Kernel code
  0a600000-0aee6fff : Kernel rodata
  0b000000-0b2489bf : Kernel data
  0b90d000-0c9fffff : Kernel bss
7ffe0000-7fffffff : Reserved
80000000-afffffff : PCI Bus 0000:00
"""


def test_system_ram_whole_pages():
    # 0x1000-0x9fbff ends mid-page: pfn 0x9f is not whole
    assert pagemap.parse_system_ram(IOMEM_Q35_2G) == [(1, 0x9f), (0x100, 0x7ffe0)]


def test_system_ram_above_4g_kept_apart():
    text = IOMEM_Q35_2G + "100000000-17fffffff : System RAM\n"
    assert pagemap.parse_system_ram(text)[-1] == (0x100000, 0x180000)


def test_system_ram_read_as_non_root_is_refused():
    with pytest.raises(ValueError):
        pagemap.parse_system_ram("00000000-00000000 : System RAM\n00000000-00000000 : System RAM\n")


class FakeGuest:
    def __init__(self, iomem, hva_of):
        self.iomem, self.hva_of = iomem, hva_of

    def run(self, cmd):
        assert cmd == "cat /proc/iomem"
        return type("R", (), {"stdout": self.iomem})()

    def ram_hva(self, gpa):
        return self.hva_of(gpa)


def test_layout_from_gpa2hva():
    base = 0x7f0000000000
    ranges = pagemap.layout(FakeGuest(IOMEM_Q35_2G, lambda gpa: base + gpa))
    assert ranges == [RamRange(1, 0x9e, base + 0x1000), RamRange(0x100, 0x7ffe0 - 0x100, base + 0x100000)]


def test_layout_splits_a_range_where_the_host_mapping_changes():
    # two NUMA nodes: guest RAM from 1 GiB on lives in a second backend elsewhere on the host
    base, node1 = 0x7f0000000000, 0x7e0000000000
    two = lambda gpa: node1 + gpa - 0x40000000 if gpa >= 0x40000000 else base + gpa  # noqa: E731
    ranges = pagemap.layout(FakeGuest(IOMEM_Q35_2G, two))
    covered = sorted((r.pfn, r.end) for r in ranges)
    assert covered[0][0] == 1 and covered[-1][1] == 0x7ffe0
    for r in ranges:  # every piece is one contiguous host mapping
        assert r.hva == two(r.pfn * 4096)
        assert two((r.end - 1) * 4096) == r.hva + (r.pages - 1) * 4096
        assert r.end <= 0x40000 or r.pfn >= 0x40000, "a piece straddles the two backends"


def test_layout_refuses_a_page_without_one_host_page():
    with pytest.raises(ValueError, match="does not map to one host page"):
        pagemap.layout(FakeGuest(IOMEM_Q35_2G, lambda gpa: 0x7f0000000000 + 2 * gpa))


@given(st.lists(st.integers(0, (1 << 64) - 1), max_size=64))
def test_held_of_is_present_or_swapped(entries):
    raw = b"".join(struct.pack("<Q", e) for e in entries)
    assert pagemap.held_of(raw) == bytes(1 if e >> 62 else 0 for e in entries)


@given(st.lists(st.integers(0, (1 << 64) - 1), max_size=64), st.sets(st.integers(0, 15), max_size=4))
def test_held_of_leaves_out_the_zero_pages(entries, zero):
    # low PFNs so the drawn entries hit the zero set often
    entries = [e & ~pagemap.PFN_MASK | (e & 15) for e in entries]
    raw = b"".join(struct.pack("<Q", e) for e in entries)
    want = bytes(0 if (e >> 63 and (e & pagemap.PFN_MASK) in zero) else (1 if e >> 62 else 0) for e in entries)
    assert pagemap.held_of(raw, frozenset(zero)) == want


def test_shared_pfns_are_present_and_not_exclusive():
    present, excl = 1 << 63, 1 << 56
    raw = b"".join(struct.pack("<Q", e) for e in (present | 7, present | excl | 8, 1 << 62 | 9, present | 1 << 61 | 10))
    assert pagemap.shared_pfns(raw) == {7, 10}


def test_held_of_rejects_partial_entries():
    with pytest.raises(ValueError):
        pagemap.held_of(b"\0" * 12)


# --- real reads of our own pagemap: the same discards QEMU does -----------------

libc = ctypes.CDLL(None, use_errno=True)
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
PAGES = 64


def _addr(m: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(m))


def _close(m: mmap.mmap) -> None:
    gc.collect()  # no ctypes view made by _addr may outlive the map
    m.close()


def _held(m: mmap.mmap) -> bytes:
    return bytes(pagemap.read_held(os.getpid(), [RamRange(0, PAGES, _addr(m))]))


def test_anonymous_touch_then_dontneed():
    m = mmap.mmap(-1, PAGES * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(mmap.MADV_NOHUGEPAGE)  # 4 KiB pages, so single pages can be told apart
        assert _held(m) == bytes(PAGES)  # never touched: absent
        for i in range(0, PAGES, 2):
            m[i * PAGE] = 1
        assert _held(m) == bytes([1, 0] * (PAGES // 2))
        m.madvise(mmap.MADV_DONTNEED, 0, 16 * PAGE)  # QEMU's discard of private anonymous RAM
        assert _held(m) == bytes(16) + bytes([1, 0] * ((PAGES - 16) // 2))
    finally:
        _close(m)


def test_a_read_of_untouched_anonymous_memory_is_not_held():
    # The zero page: present in pagemap, in no RSS. A restored guest's zero pages are mapped
    # this way (QEMU reads each to see it is zero); the model must not count them as held.
    m = mmap.mmap(-1, PAGES * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(mmap.MADV_NOHUGEPAGE)
        for i in range(PAGES):
            assert m[i * PAGE] == 0  # a read fault: the zero page
        m[5 * PAGE] = 1
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(_addr(m) // PAGE * 8)
            raw = f.read(PAGES * 8)
        assert sum(e >> 63 for (e,) in struct.iter_unpack("<Q", raw)) == PAGES  # all present
        want = bytearray(PAGES)
        want[5] = 1
        assert _held(m) == bytes(want)
    finally:
        _close(m)


def test_memfd_page_cache_counts_even_when_unmapped():
    # A shared mapping's page can leave QEMU's page tables and stay in the file:
    # pagemap alone would call it released.
    fd = os.memfd_create("pagemap-test")
    try:
        os.ftruncate(fd, PAGES * PAGE)
        os.pwrite(fd, b"x" * PAGE, 3 * PAGE)  # in the page cache, never mapped
        m = mmap.mmap(fd, PAGES * PAGE, flags=mmap.MAP_SHARED)
        try:
            m[10 * PAGE] = 1
            m.madvise(mmap.MADV_DONTNEED, 10 * PAGE, PAGE)  # unmapped again, still in the file
            want = bytearray(PAGES)
            want[3] = want[10] = 1
            assert _held(m) == bytes(want)
        finally:
            _close(m)
    finally:
        os.close(fd)


def test_memfd_touch_then_punch_hole():
    fd = os.memfd_create("pagemap-test")
    try:
        os.ftruncate(fd, PAGES * PAGE)
        m = mmap.mmap(fd, PAGES * PAGE, flags=mmap.MAP_SHARED)
        try:
            m[:] = b"\x5a" * (PAGES * PAGE)
            assert _held(m) == bytes([1]) * PAGES
            # QEMU's discard of fd-backed RAM (ram_block_discard_range): punch a hole
            if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              ctypes.c_long(8 * PAGE), ctypes.c_long(8 * PAGE)) != 0:
                pytest.skip(f"fallocate punch hole: errno {ctypes.get_errno()}")
            assert _held(m) == bytes([1]) * 8 + bytes(8) + bytes([1]) * (PAGES - 16)
        finally:
            _close(m)
    finally:
        os.close(fd)


def test_layout_from_an_iomem_already_read():
    class NoRun(FakeGuest):
        def run(self, cmd):
            raise AssertionError("read /proc/iomem again")
    base = 0x7f0000000000
    ranges = pagemap.layout(NoRun(None, lambda gpa: base + gpa), IOMEM_Q35_2G)
    assert ranges == pagemap.layout(FakeGuest(IOMEM_Q35_2G, lambda gpa: base + gpa))
