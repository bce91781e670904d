"""Run by tests/unit/test_conftest_dims.py in a child pytest; never boots a guest."""
import pytest


@pytest.fixture(autouse=True)
def no_boot(monkeypatch):
    monkeypatch.setattr("harness.vm.guest.Guest.launch", lambda self: pytest.fail("a guest was booted"))


def test_books_another_cell_than_its_parameters(guest_factory):
    guest_factory(kernel="6.12")


@pytest.mark.kvm
def test_needs_kvm(guest_factory):
    pytest.fail("ran without KVM")
