"""The balloon statistics poller: what it keeps of an answer, and which answer counts as
"after" a moment (QEMU stamps answers in whole epoch seconds). A fake guest stands in for QMP."""
import time

from harness.vm import balloon
from harness.measure.stats_poller import StatsPoller, sample_of

MIB = 1 << 20


def _reply(free_mib, last):
    stats = {k: balloon.UNSET for k in balloon.STATS_61}
    stats["stat-free-memory"] = int(free_mib * MIB)
    stats["stat-available-memory"] = int((free_mib + 10) * MIB)
    return {"stats": stats, "last-update": last}


def test_an_answer_keeps_free_available_and_caches_in_mib():
    s = sample_of(balloon.parse_guest_stats(_reply(1902.5, 1796000000)), t=5.0)
    assert (s.free_mib, s.available_mib, s.caches_mib, s.last_update) == (1902.5, 1912.5, None, 1796000000)
    assert s.to_row(4.0) == [1.0, 1796000000, 1902.5, 1912.5, None]


class FakeGuest:
    """Answers qom-set/qom-get like QEMU: a new answer stamped with the current whole second."""
    def __init__(self):
        self.free = 1000.0

    def qmp_cmd(self, cmd, **args):
        if cmd == "qom-set":
            return {}
        if args["property"] == "guest-stats-polling-interval":
            return 1
        return _reply(self.free, int(time.time()))


def test_the_first_answer_after_a_moment_is_stamped_after_it():
    g = FakeGuest()
    with StatsPoller(g, period=0.05) as p:
        assert p.interval == 1
        t = time.monotonic()
        g.free = 2000.0
        got = p.next_after(t, timeout=3.0)
    # stamped in a later whole second than `t`: received after it, so it saw the new value
    assert got is not None and got.free_mib == 2000.0
    assert got.last_update > time.time() - time.monotonic() + t


def test_no_answer_in_time_is_none():
    g = FakeGuest()
    with StatsPoller(g, period=10.0) as p:   # one read at the start, none after
        assert p.next_after(time.monotonic() + 5, timeout=0.2) is None


class HalfSecondGuest(FakeGuest):
    """QEMU's timer half a second into each second: a new answer at x.5, stamped x."""
    def qmp_cmd(self, cmd, **args):
        if cmd == "qom-set" or args["property"] == "guest-stats-polling-interval":
            return super().qmp_cmd(cmd, **args)
        now = time.time()
        got = int(now) if now % 1 >= 0.5 else int(now) - 1
        return _reply(self.free, got)


def test_an_answer_first_read_after_a_read_past_the_moment_counts_before_its_stamp_does():
    # t early in a second: the answer QEMU gets at its .5 is stamped with t's own second, and
    # counts because a read begun after t did not have it yet; by the stamp alone it would
    # wait for the next second's answer (~1.4 s)
    g = HalfSecondGuest()
    with StatsPoller(g, period=0.02) as p:
        while not 0.05 < time.time() % 1 < 0.2:
            time.sleep(0.01)
        t = time.monotonic()
        got = p.next_after(t, timeout=3.0)
        waited = time.monotonic() - t
    assert got is not None and got.absent_at is not None and got.absent_at >= t
    assert got.last_update <= time.time() - time.monotonic() + t  # its stamp alone would not count
    assert waited < 0.6


def test_an_answer_of_the_first_read_counts_only_by_its_stamp():
    g = HalfSecondGuest()
    t = time.monotonic()
    with StatsPoller(g, period=10.0) as p:  # one read: the answer it finds may be older than t
        assert p.next_after(t, timeout=0.2) is None
