from dataclasses import replace

import pytest

from harness.vm import qemu_argv
from harness.config import GuestConfig

RES = qemu_argv.Resources(qemu="/usr/bin/qemu-system-x86_64", kernel="/img/vmlinuz", initrd="/img/initrd.cpio",
                          base_cmdline="console=ttyS0 panic=-1", qmp_fd=7, console_log="/run/console.log",
                          ssh_port=40022, ssh_pubkey_b64="AAAAKEY")


def opt(argv, flag):
    """All values given to `flag`."""
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_default_guest_has_reporting_balloon_and_anonymous_ram():
    argv = qemu_argv.build(GuestConfig(accel="tcg"), RES)
    assert argv[0] == RES.qemu
    assert "virtio-balloon-pci,id=balloon0,free-page-reporting=on,free-page-hint=off" in opt(argv, "-device")
    assert opt(argv, "-object") == ["memory-backend-ram,id=ram0,size=2048M"]
    assert opt(argv, "-m") == ["2048M"] and opt(argv, "-smp") == ["2"]
    assert opt(argv, "-machine") == ["q35,memory-backend=ram0"]
    assert opt(argv, "-accel") == ["tcg,thread=multi"] and opt(argv, "-cpu") == ["max"]
    assert "-no-reboot" in argv and "-nodefaults" in argv


def test_reporting_off_and_hinting_needs_iothread():
    argv = qemu_argv.build(GuestConfig(accel="tcg", reporting=False, hinting=True), RES)
    balloon = [d for d in opt(argv, "-device") if d.startswith("virtio-balloon")][0]
    assert "free-page-reporting=off" in balloon and "free-page-hint=on" in balloon
    assert "iothread=iot0" in balloon and "iothread,id=iot0" in opt(argv, "-object")


def test_kvm_uses_host_cpu():
    argv = qemu_argv.build(GuestConfig(accel="kvm"), RES)
    assert opt(argv, "-accel") == ["kvm"] and opt(argv, "-cpu") == ["host"]


def test_memfd_backend_is_shared():
    argv = qemu_argv.build(GuestConfig(accel="tcg", backend="memfd", memory_mib=4096), RES)
    assert opt(argv, "-object") == ["memory-backend-memfd,id=ram0,size=4096M,share=on"]


def test_ssh_forward_is_loopback_only_and_guest_is_restricted():
    netdev = opt(qemu_argv.build(GuestConfig(accel="tcg"), RES), "-netdev")[0]
    assert "hostfwd=tcp:127.0.0.1:40022-:22" in netdev and "restrict=on" in netdev


def test_qmp_over_inherited_fd_and_console_to_file():
    argv = qemu_argv.build(GuestConfig(accel="tcg"), RES)
    assert "socket,id=qmp,fd=7" in opt(argv, "-chardev")
    assert "file,id=con,path=/run/console.log" in opt(argv, "-chardev")


def test_kernel_cmdline_carries_key_order_and_extra_args_as_one_argument():
    cfg = GuestConfig(accel="tcg", reporting_order=10, kernel_args=("init_on_free=1",))
    (append,) = opt(qemu_argv.build(cfg, RES), "-append")
    assert append == ("console=ttyS0 panic=-1 e2e.sshkey=AAAAKEY watchdog_thresh=60 e2e.reporting_order=10 "
                      "init_on_free=1")


def test_soft_lockup_threshold_is_raised_under_tcg_only():
    (tcg,) = opt(qemu_argv.build(GuestConfig(accel="tcg"), RES), "-append")
    (kvm,) = opt(qemu_argv.build(GuestConfig(accel="kvm"), RES), "-append")
    assert "watchdog_thresh=60" in tcg.split()
    assert "watchdog_thresh" not in kvm


def test_unresolved_accel_is_refused():
    with pytest.raises(ValueError, match="resolved"):
        qemu_argv.build(GuestConfig(accel="auto"), RES)


# --- QEMU binary's data dirs, RAM backends, NUMA --------------------------------

def build(**kw):
    res = kw.pop("res", RES)
    return qemu_argv.build(GuestConfig(accel="tcg", **kw), res)


def test_data_dirs_become_L_options_in_order_before_anything_else():
    res = replace(RES, data_dirs=("/c/usr/share/qemu", "/c/usr/share/seabios"))
    argv = build(res=res)
    assert argv[1:5] == ["-L", "/c/usr/share/qemu", "-L", "/c/usr/share/seabios"]
    assert "-L" not in build()  # the system QEMU uses its built-in firmware paths


def test_file_backend_is_shared_and_lives_in_the_given_directory():
    argv = build(backend="file", res=replace(RES, mem_path="/dev/shm"))
    assert opt(argv, "-object") == ["memory-backend-file,id=ram0,size=2048M,mem-path=/dev/shm,share=on"]
    assert opt(argv, "-machine") == ["q35,memory-backend=ram0"]


@pytest.mark.parametrize("page", [2, 1024])
def test_hugetlbfs_backend_is_a_shared_file_on_the_mount(page):
    argv = build(backend="hugetlbfs", hugepage_mib=page, res=replace(RES, mem_path=f"/run/d/hugetlbfs-{page}M"))
    assert opt(argv, "-object") == [f"memory-backend-file,id=ram0,size=2048M,mem-path=/run/d/hugetlbfs-{page}M,share=on"]


def test_a_comma_in_mem_path_cannot_add_an_option():
    (obj,) = opt(build(backend="file", res=replace(RES, mem_path="/x,share=off")), "-object")
    assert obj.endswith("mem-path=/x,,share=off,share=on")


@pytest.mark.parametrize("backend", ["file", "hugetlbfs"])
def test_fd_backends_need_a_mem_path(backend):
    with pytest.raises(ValueError, match="mem_path"):
        build(backend=backend)


@pytest.mark.parametrize("backend,head", [
    ("anon", "memory-backend-ram"), ("memfd", "memory-backend-memfd"), ("file", "memory-backend-file"),
    ("hugetlbfs", "memory-backend-file")])
def test_two_numa_nodes_get_a_backend_each_and_half_the_vcpus(backend, head):
    argv = build(backend=backend, numa_nodes=2, res=replace(RES, mem_path="/m"))
    objs = opt(argv, "-object")
    assert [o.split(",")[:3] for o in objs] == [[head, "id=ram0", "size=1024M"], [head, "id=ram1", "size=1024M"]]
    assert opt(argv, "-numa") == ["node,nodeid=0,cpus=0,memdev=ram0", "node,nodeid=1,cpus=1,memdev=ram1"]
    # with -numa memdev the machine must not name a memory-backend of its own
    assert opt(argv, "-machine") == ["q35"] and opt(argv, "-m") == ["2048M"]
    # one socket per node, or the guest warns that cache siblings sit on two nodes
    assert opt(argv, "-smp") == ["2,sockets=2,cores=1,threads=1"]


def test_four_vcpus_on_two_nodes():
    argv = build(numa_nodes=2, smp=4)
    assert opt(argv, "-numa") == ["node,nodeid=0,cpus=0-1,memdev=ram0", "node,nodeid=1,cpus=2-3,memdev=ram1"]
    assert opt(argv, "-smp") == ["4,sockets=2,cores=2,threads=1"]


def test_one_node_has_no_numa_option_and_a_plain_smp():
    argv = build()
    assert opt(argv, "-numa") == [] and opt(argv, "-smp") == ["2"]


def test_host_thp_is_not_an_argv_matter():
    # QEMU madvises guest RAM huge unconditionally; host THP off is a prctl on the
    # QEMU process (harness/vm/guest.py), so the argv is the same.
    assert build(host_thp=False) == build(host_thp=True) == build()
