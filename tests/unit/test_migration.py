"""Pure migration logic on stored real captures (tests/data/hint_migrate/, QEMU 7.2.22 and
10.0.2 on this machine)."""
import json
from dataclasses import replace
from pathlib import Path

import pytest

from harness.vm import migration, qemu_argv
from harness.config import GuestConfig
from harness.vm.migration import MigrationSample

DATA = Path(__file__).parent.parent / "data" / "hint_migrate"
ON = "6.1-qemu10.0-hint-on-reporting-off.json"
OFF = "6.1-qemu7.2-hint-off-reporting-off.json"


def load(name):
    return json.loads((DATA / name).read_text())


def samples(name):
    return [MigrationSample(**s) for s in load(name)["samples"]]


@pytest.mark.parametrize("name,normal,dup,syncs", [(ON, 43302, 220082, 4), (OFF, 107419, 155315, 3)])
def test_query_migrate_of_both_versions(name, normal, dup, syncs):
    # 7.2 has ram.skipped (always 0), 10.0 has not; both count pages the same way
    s = migration.parse_query_migrate(load(name)["migration_final"], 9.0)
    assert (s.status, s.normal_pages, s.duplicate_pages, s.dirty_sync_count) == ("completed", normal, dup, syncs)
    assert s.remaining_bytes == 0 and s.total_bytes == 262274 * 4096


def test_query_migrate_before_setup_and_foreign_replies():
    assert migration.parse_query_migrate({"status": "setup"}, 0).normal_pages == 0
    with pytest.raises(ValueError):
        migration.parse_query_migrate({"return": {}}, 0)


def test_hint_phase_ends_where_the_scenario_saw_it_end():
    r = load(ON)
    xs = samples(ON)
    end = next(i for i, s in enumerate(xs) if s.t == r["hint_end"]["t"])
    assert migration.hint_phase_over(xs[:end + 1], 2.0, 32 << 20)
    # while the guest was still hinting (remaining falling ~150 MiB/s) it was not over
    assert not any(migration.hint_phase_over(xs[:i + 1], 2.0, 32 << 20) for i in range(end))


def test_hint_phase_needs_the_quiet_window():
    xs = samples(OFF)
    first = next(i for i, s in enumerate(xs) if s.dirty_sync_count == 1)
    # a quiet round-1 start is not over before 2 s of samples exist
    assert not migration.hint_phase_over(xs[:first + 1], 2.0, 32 << 20)


def test_hinted_drops_measure_the_hints_on_the_host():
    # hinting off: one page (4 KiB) over the round, query-migrate's fields are not read at one instant
    assert migration.hinted_drops(samples(OFF)) <= 4096
    on = migration.hinted_drops(samples(ON)) / (1 << 20)
    # 784 MiB held by the guest (MemFree); the scan had sent 2080 normal pages before hints
    # ended and hints of pages already sent lower nothing
    assert 740 < on <= 784
    # planted: the same samples without the hint drops (remaining falls only by pages sent)
    flat = [replace(s, remaining_bytes=s.total_bytes - (s.normal_pages + s.duplicate_pages) * 4096)
            for s in samples(ON)]
    assert migration.hinted_drops(flat) == 0


def test_destination_argv_is_the_source_argv_plus_incoming():
    res = qemu_argv.Resources(qemu="/q", kernel="/k", initrd="/i", base_cmdline="console=ttyS0", qmp_fd=7,
                              console_log="/c", ssh_port=1, ssh_pubkey_b64="K")
    cfg = GuestConfig(accel="tcg", hinting=True)
    src = qemu_argv.build(cfg, res)
    dst = qemu_argv.build(cfg, replace(res, incoming="unix:/run/m.sock"))
    assert dst[:len(src)] == src and dst[len(src):] == ["-incoming", "unix:/run/m.sock"]
    assert "-incoming" not in src


def test_info_ramblock_of_qemu_10():
    text = load("6.1-qemu10.0-hint-on-reporting-on.json")["state"]["info_ramblock"]
    blocks = migration.parse_ramblocks(text)
    assert blocks[0] == migration.RamBlock("ram0", 1 << 30)
    # every other block together: what query-migrate's ram.total has beyond guest RAM
    other = sum(-(-b.used_bytes // 4096) for b in blocks[1:])
    assert other == 130 == load(ON)["migration_final"]["ram"]["total"] // 4096 - 262144
    with pytest.raises(ValueError):
        migration.parse_ramblocks("Block Name PSize Offset Used Total\r\n")
