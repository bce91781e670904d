"""Every parser of guest output fails only with its own clear error on garbage, never a crash."""
from hypothesis import given, settings, strategies as st

from harness.measure import guestfacts, pagemap, perblock
from harness.errors import GuestError
from harness.measure.procfs import ProcParseError

# guest-like text: digits, hex, the separators and keywords the real files use
_pieces = st.sampled_from(list("0123456789abcdef :,-\n\t") + ["Node ", "zone ", "System RAM", "run ", "buddy",
                                                              "----e2e-snapshot:buddyinfo\n"])
guestish = st.lists(_pieces, max_size=120).map("".join)


@settings(max_examples=300)
@given(st.one_of(guestish, st.text(max_size=200)))
def test_e2epfn_output(text):
    try:
        perblock.parse_scan(text)
    except ProcParseError:
        pass


@settings(max_examples=300)
@given(st.one_of(guestish, st.text(max_size=200)))
def test_iomem(text):
    try:
        pagemap.parse_system_ram(text)
    except ValueError:  # ProcParseError is a ValueError too
        pass


@settings(max_examples=300)
@given(st.one_of(guestish, st.text(max_size=200)))
def test_snapshot_split(text):
    try:
        guestfacts.split_snapshot(text)
    except GuestError:
        pass
