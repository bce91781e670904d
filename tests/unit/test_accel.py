import pytest

from harness.vm.accel import choose, cpu_flags
from harness.errors import UserError


@pytest.mark.parametrize("flags,opens,want", [
    ({"vmx"}, True, "kvm"), ({"svm"}, True, "kvm"),
    ({"vmx"}, False, "tcg"),  # no usable /dev/kvm
    (set(), True, "tcg"),  # paravirtual nested KVM (kvm-pvm): /dev/kvm opens, no vmx/svm
    (set(), False, "tcg"),
])
def test_auto(flags, opens, want):
    assert choose("auto", flags, opens) == want


def test_tcg_always():
    assert choose("tcg", {"vmx"}, True) == "tcg"


def test_kvm_where_it_works():
    assert choose("kvm", {"svm"}, True) == "kvm"


@pytest.mark.parametrize("flags,opens,match", [({"vmx"}, False, "/dev/kvm"), (set(), True, "vmx/svm")])
def test_kvm_where_it_cannot_work_is_a_one_line_error(flags, opens, match):
    with pytest.raises(UserError, match=match) as e:
        choose("kvm", flags, opens)
    assert "\n" not in str(e.value)


def test_cpu_flags():
    assert {"fpu", "vmx"} <= cpu_flags("processor\t: 0\nflags\t\t: fpu vme vmx\nbugs\t: x\n")
    assert cpu_flags("processor: 0\n") == set()
