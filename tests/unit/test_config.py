import pytest
from hypothesis import given, strategies as st

from harness.config import BACKENDS, GuestConfig, model_host, parse_mib
from harness.errors import UserError


@pytest.mark.parametrize("text,mib", [("2048", 2048), ("2G", 2048), ("512M", 512), ("1GiB", 1024), (" 64m ", 64), (7, 7)])
def test_parse_mib(text, mib):
    assert parse_mib(text) == mib


@pytest.mark.parametrize("text", ["", "2T", "-1", "1.5G", "2 G B", "1e3", "12;rm -rf /"])
def test_parse_mib_rejects_with_one_line(text):
    with pytest.raises(UserError) as e:
        parse_mib(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw,match", [
    ({"memory_mib": 64}, "memory"), ({"smp": 0}, "smp"), ({"accel": "hvf"}, "accel"),
    ({"backend": "hugetlbfs-typo"}, "backend"), ({"reporting_order": 11}, "order"),
    ({"kernel_args": ("a b",)}, "kernel argument"), ({"kernel_args": ("x=$(reboot)",)}, "kernel argument"),
    ({"kernel_args": ("x';reboot",)}, "kernel argument"),
    ({"qemu": "9.2"}, "QEMU '9.2' not one of 7.2, 10.0"), ({"qemu": "latest"}, "QEMU"),
    ({"backend": "hugetlbfs", "hugepage_mib": 4}, "huge page size 4"),
    ({"backend": "anon", "hugepage_mib": 1024}, "only to the hugetlbfs backend"),
    ({"backend": "hugetlbfs", "hugepage_mib": 1024, "memory_mib": 1536}, "whole 1024 MiB pages"),
    ({"backend": "hugetlbfs", "hugepage_mib": 1024, "numa_nodes": 2, "memory_mib": 3072}, "2 node"),
    ({"numa_nodes": 3}, "NUMA nodes 3"), ({"numa_nodes": 0}, "NUMA nodes 0"),
    ({"numa_nodes": 2, "smp": 1}, "do not split evenly"), ({"numa_nodes": 2, "smp": 3}, "do not split evenly"), ({"numa_nodes": 2, "memory_mib": 1026}, "does not split"),
    ({"backend": "memfd", "host_thp": False}, "anonymous RAM"), ({"backend": "hugetlbfs", "host_thp": True}, "anonymous"),
])
def test_config_validation(kw, match):
    with pytest.raises(UserError, match=match):
        GuestConfig(**kw)


def test_config_is_frozen():
    with pytest.raises(Exception):
        GuestConfig().memory_mib = 1


@given(st.text(max_size=30))
def test_parse_mib_never_crashes(text):
    try:
        assert parse_mib(text) >= 0
    except UserError:
        pass


@pytest.mark.parametrize("kw", [
    {"qemu": "7.2"}, {"qemu": "10.0"}, {"qemu": "/opt/qemu/bin/qemu-system-x86_64"}, {"qemu": "./qemu"},
    {"backend": "file"}, {"backend": "hugetlbfs"}, {"backend": "hugetlbfs", "hugepage_mib": 1024},
    {"numa_nodes": 2}, {"numa_nodes": 2, "smp": 4}, {"numa_nodes": 2, "backend": "hugetlbfs"},
    {"host_thp": True}, {"host_thp": False},
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_valid_dimensions(kw):
    GuestConfig(**kw)


def test_one_line_errors_for_every_new_dimension():
    for kw in ({"qemu": "8"}, {"numa_nodes": 4}, {"backend": "hugetlbfs", "hugepage_mib": 3}):
        with pytest.raises(UserError) as e:
            GuestConfig(**kw)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw,page", [({}, 4096), ({"backend": "memfd"}, 4096), ({"backend": "file"}, 4096),
                                     ({"backend": "hugetlbfs"}, 2 << 20),
                                     ({"backend": "hugetlbfs", "hugepage_mib": 1024}, 1 << 30)])
def test_host_page_size(kw, page):
    assert GuestConfig(**kw).host_page_size == page


def test_nodes_split_ram_and_vcpus():
    cfg = GuestConfig(numa_nodes=2, smp=2, memory_mib=2048)
    assert cfg.node_mib == 1024 and [list(cfg.node_cpus(n)) for n in (0, 1)] == [[0], [1]]
    one = GuestConfig(smp=2)
    assert one.node_mib == 2048 and list(one.node_cpus(0)) == [0, 1]


@pytest.mark.parametrize("backend,want", [("anon", ("anon", "rss")), ("memfd", ("memfd", "rss")),
                                          ("file", ("memfd", "rss")), ("hugetlbfs", ("hugetlbfs", "mapping"))])
def test_model_host_names_the_models_backend_and_the_metric_that_moves(backend, want):
    assert model_host(backend) == want


def test_model_host_knows_every_backend():
    from harness.model.discard import HostConfig
    for b in BACKENDS:
        HostConfig(backend=model_host(b)[0], page_size=GuestConfig(backend=b).host_page_size)
