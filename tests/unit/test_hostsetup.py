"""Host resources for RAM backings: pure parsers, and the huge page reservation's bookkeeping."""
import pytest

from harness.measure import hostmem

from harness.vm import hostsetup

MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /dev/shm tmpfs rw,relatime,size=24684084k 0 0
hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0
none /tmp/balloon-e2e-x/hugetlbfs-1024M hugetlbfs rw,relatime,mode=700,pagesize=1024M 0 0
tmpfs /mnt/with\\040space tmpfs rw 0 0
"""


def test_hugetlbfs_mounts_by_page_size():
    m = hostsetup.parse_mounts(MOUNTS)
    assert hostsetup.hugetlbfs_mounts(m, 2) == ["/dev/hugepages"]
    assert hostsetup.hugetlbfs_mounts(m, 1024) == ["/tmp/balloon-e2e-x/hugetlbfs-1024M"]
    assert hostsetup.hugetlbfs_mounts(hostsetup.parse_mounts("none /h hugetlbfs rw,pagesize=1G 0 0"), 1024) == ["/h"]


def test_tmpfs_and_escaped_mount_points():
    m = hostsetup.parse_mounts(MOUNTS)
    assert hostsetup.is_tmpfs(m, "/dev/shm") and hostsetup.is_tmpfs(m, "/mnt/with space")
    assert not hostsetup.is_tmpfs(m, "/sys") and not hostsetup.is_tmpfs(m, "/nowhere")


@pytest.mark.parametrize("text,mode", [("always [madvise] never\n", "madvise"), ("[always] madvise never", "always"),
                                       ("always madvise [never]", "never")])
def test_thp_mode(text, mode):
    assert hostsetup.thp_mode(text) == mode


def test_hugepages_dir():
    assert str(hostsetup.hugepages_dir(2)).endswith("hugepages-2048kB")
    assert str(hostsetup.hugepages_dir(1024)).endswith("hugepages-1048576kB")


@pytest.fixture
def fake_pool(tmp_path, monkeypatch):
    """nr_hugepages as a plain file; `cap` is what the kernel manages to allocate."""
    d = tmp_path / "hugepages-2048kB"
    d.mkdir()
    nr = d / "nr_hugepages"
    nr.write_text("3\n")
    state = {"cap": 10 ** 9}
    real_write = type(nr).write_text

    def write_text(self, text, *a, **kw):
        if self == nr:
            text = f"{min(int(text), state['cap'])}\n"
        return real_write(self, text, *a, **kw)

    monkeypatch.setattr(type(nr), "write_text", write_text)
    monkeypatch.setattr(hostsetup, "hugepages_dir", lambda mib: d)
    monkeypatch.setattr(hostsetup, "hugetlb_unsupported", lambda mib: None)
    monkeypatch.setenv("BALLOON_E2E_CACHE", str(tmp_path / "cache"))
    return nr, state


def test_reservation_adds_our_share_and_puts_it_back(fake_pool):
    nr, _ = fake_pool
    with hostsetup.hugepages_reserved(2, 1024):
        assert nr.read_text() == "1027\n"
        with hostsetup.hugepages_reserved(2, 10):  # a second guest at the same time
            assert nr.read_text() == "1037\n"
        assert nr.read_text() == "1027\n"
    assert nr.read_text() == "3\n"


def test_reservation_put_back_when_the_block_fails(fake_pool):
    nr, _ = fake_pool
    with pytest.raises(RuntimeError):
        with hostsetup.hugepages_reserved(2, 8):
            raise RuntimeError("QEMU failed")
    assert nr.read_text() == "3\n"


def test_short_reservation_is_host_unsupported_and_put_back(fake_pool):
    nr, state = fake_pool
    state["cap"] = 5
    with pytest.raises(hostsetup.HostUnsupported, match="gave 2 of 8"):
        with hostsetup.hugepages_reserved(2, 8):
            pass
    assert nr.read_text() == "3\n"


SMAPS_HUGETLB = """\
7f4000000000-7f4080000000 rw-s 00000000 00:3a 1 /tmp/balloon-e2e-x/hugetlbfs-2M/qemu_back_mem.ram0.l3spMN (deleted)
Size:            2097152 kB
KernelPageSize:     2048 kB
Rss:                   0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:  167936 kB
"""


def test_hugetlb_mapping_counts_its_huge_pages():
    # hostmem.resident_kb: captured on this host (QEMU 7.2, hugetlbfs 2M, share=on, just booted)
    (v,) = hostmem.parse_smaps(SMAPS_HUGETLB)
    assert v.kb["Rss"] == 0 and hostmem.resident_kb(v) == 167936


SMAPS_TWO_NODES = """\
7f1e43c00000-7f1e83c00000 rw-p 00000000 00:00 0 
Size:            1048576 kB
Rss:              900000 kB
7f1e83e00000-7f1ec3e00000 rw-p 00000000 00:00 0 
Size:            1048576 kB
Rss:              104000 kB
"""


def test_ram_of_two_backends_is_their_sum_and_a_mapping_counts_once():
    vmas = hostmem.parse_smaps(SMAPS_TWO_NODES)
    node0, node1 = 0x7f1e83e00000, 0x7f1e43c00000
    assert hostmem.ram_kb(vmas, node0) == 104000  # one address, as before
    assert hostmem.ram_kb(vmas, (node0, node1)) == 1004000
    assert hostmem.ram_kb(vmas, (node0, node0 + 4096)) == 104000
