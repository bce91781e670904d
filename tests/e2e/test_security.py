"""What a guest exposes on the host: SSH on loopback only, no QMP or console socket
anyone else can reach, no password login, private run files."""
import os
import socket
import stat

import paramiko
import psutil
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_guest_exposure(guest_factory):
    g = guest_factory(memory_mib=512, smp=1)
    listening = [c for c in psutil.Process(g.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "QEMU should listen for the forwarded SSH port"
    assert all(c.laddr.ip == "127.0.0.1" for c in listening), listening
    assert {c.laddr.port for c in listening} == {g.ssh_port}
    # QMP is a socketpair: QEMU has no listening unix socket at all.
    assert not [c for c in psutil.Process(g.pid).net_connections(kind="unix") if c.status == psutil.CONN_LISTEN and c.laddr]
    # The run directory (console and QEMU logs) is private to its owner.
    assert stat.S_IMODE(os.stat(g.rundir).st_mode) == 0o700
    # No password gets in, not even an empty one.
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    for pw in ("", "root"):
        with pytest.raises(paramiko.AuthenticationException):
            c.connect("127.0.0.1", port=g.ssh_port, username="root", password=pw, look_for_keys=False,
                      allow_agent=False, timeout=10)
        c.close()
    # The guest reaches nothing outside (slirp restrict=on): a host listener on
    # loopback, which slirp would expose as 10.0.2.2 without restrict, gets nothing.
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(0.5)
        r = g.run(f"nc -w 3 10.0.2.2 {srv.getsockname()[1]} </dev/null; echo rc=$?", check=False)
        with pytest.raises(socket.timeout):
            srv.accept()
    assert "rc=0" not in r.stdout
