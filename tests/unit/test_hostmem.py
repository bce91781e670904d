from harness.measure import hostmem
from harness.measure.hostmem import Sample

SMAPS = """\
55d0c0000000-55d0c0100000 r-xp 00000000 fd:00 123 /usr/bin/qemu-system-x86_64
Size:               1024 kB
Rss:                 800 kB
7f0000000000-7f0080000000 rw-p 00000000 00:00 0 
Size:            2097152 kB
Rss:             1048576 kB
AnonHugePages:   1044480 kB
VmFlags: rd wr mr mw me ac hg
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Rss:                  16 kB
"""


def test_parse_smaps_and_find_the_guest_ram_mapping():
    vmas = hostmem.parse_smaps(SMAPS)
    assert len(vmas) == 3 and vmas[2].name == "[stack]"
    ram = hostmem.mapping_at(vmas, 0x7f0000200000)
    assert ram.kb["Rss"] == 1048576 and ram.kb["AnonHugePages"] == 1044480 and ram.name == ""


def test_tcg_translation_cache_is_the_unnamed_rwx_mapping():
    # as in a 10.0 QEMU under TCG: a 1 GiB anonymous rwxp mapping (tcg/region.c); the QEMU
    # binary's r-xp text and the RAM's rw-p mapping are not it
    vmas = hostmem.parse_smaps(SMAPS + """\
7f8084000000-7f80c3fff000 rwxp 00000000 00:00 0 
Size:            1048572 kB
Rss:                2048 kB
""")
    assert vmas[3].perms == "rwxp" and hostmem.tcg_code_kb(vmas) == 2048
    assert hostmem.tcg_code_kb(hostmem.parse_smaps(SMAPS)) == 0


def test_mapping_at_outside_any_mapping():
    import pytest
    with pytest.raises(LookupError):
        hostmem.mapping_at(hostmem.parse_smaps(SMAPS), 0x1000)


def series(vals, dt=0.5):
    return [Sample(i * dt, v, v) for i, v in enumerate(vals)]


def test_stable_for_needs_a_full_quiet_window_after_since():
    cond = hostmem.stable_for(window=2.0, eps_mib=4, since=0.0)
    assert not cond(series([100, 100, 100]))  # only 1 s of data
    assert cond(series([100, 101, 100, 102, 100]))  # 2 s within 4 MiB
    # a step inside the window (a reporting pass) is not stable
    assert not cond(series([300, 300, 300, 44, 44]))
    assert cond(series([300, 300, 44, 44, 44, 44, 44]))


def test_fell_after_wakes_on_the_first_sample_fallen_after_since():
    # the stored touch-free run's last pass: 464.4 until 8.13 s, 212.4 from 8.24 s (0.11 s apart)
    t = [6.89, 8.01, 8.13, 8.24, 8.35]
    rss = [464.4, 464.4, 464.4, 212.4, 212.4]
    samples = [Sample(a, v, v) for a, v in zip(t, rss)]
    cond = hostmem.fell_after(since=8.035 - 1.0, step_mib=4.0)
    assert not cond(samples[:3])
    assert cond(samples[:4])
    # a fall before `since` (the previous pass) does not wake it; nor a move under the step
    assert not hostmem.fell_after(since=8.3, step_mib=4.0)(samples + [Sample(8.46, 212.4, 212.4)])
    assert not cond(samples[:3] + [Sample(8.24, 461.0, 461.0)])


def test_own_growth_counts_qemus_2_mib_toggle():
    # QEMU's own memory toggling between two levels 2 MiB apart at both ends of a stretch:
    # medians of five can read the high level at the start and the low one at the end (0);
    # the highest of the last five less the lowest of the first five reads the toggle, 2
    start = [56.3, 58.3, 56.3, 58.3, 58.3]
    end = [58.3, 56.3, 58.3, 56.3, 56.3, 60.3][:5]
    assert hostmem.own_growth(start + [57.0] * 10 + end) == 58.3 - 56.3
    assert hostmem.own_growth([50.0] * 12) == 0.0 and hostmem.own_growth([]) == 0.0
    assert hostmem.own_growth([50.0] * 6 + [48.0] * 6) == 0.0         # fell: no growth
