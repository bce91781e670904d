"""QEMU's own memory growth before a release (the qemu_own_growth term's input) counts from the
previous release, not from the run's start."""
from types import SimpleNamespace

from harness.measure.hostmem import Sample
from harness.scenarios.common import Run


class _Samples:
    def __init__(self, xs):
        self.xs = xs

    def since(self, t0):
        return [x for x in self.xs if x.t >= t0]


def _run(xs, last_release=0.0, backend="anon"):
    r = Run.__new__(Run)                    # Run() reads the guest: only what own_growth uses
    r.s, r.g, r.last_release = _Samples(xs), SimpleNamespace(cfg=SimpleNamespace(backend=backend)), last_release
    return r


def test_own_growth_counts_from_the_previous_release():
    # own memory (RSS less the RAM mapping) 100 MiB at the start, 110 by the first release at
    # t=10, 112 by now: 2 MiB since that release, 12 since the start
    xs = [Sample(t, own + ram, ram) for t, own, ram in
          [(t, 100.0, 500.0) for t in range(5)] + [(t, 110.0, 900.0) for t in range(10, 15)] +
          [(t, 112.0, 300.0) for t in range(20, 25)]]
    assert _run(xs).own_growth() == 12.0
    assert _run(xs, last_release=10).own_growth() == 2.0
    # hugetlb RAM is outside Rss: the RSS figure is QEMU's own already
    # (the highest of the last five, 59, less the lowest of the first five, 50: hostmem.own_growth)
    assert _run([Sample(t, 50.0 + t, 900.0) for t in range(10)], backend="hugetlbfs").own_growth() == 9.0
