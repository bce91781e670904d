import pytest
from hypothesis import given, strategies as st

from harness.config import GuestConfig, parse_mib
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
