from harness.build import apt

SHOW = """\
Package: busybox-static
Version: 1:1.35.0-4+deb12u1+b1
Filename: pool/main/b/busybox/busybox-static_1.35.0-4+deb12u1+b1_amd64.deb
SHA256: abc
Description: x
 continued line

Package: linux-image-amd64
Version: 6.1.176-1
Depends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)
SHA256: def
"""


def test_parse_show_stanzas_and_continuations():
    a, b = apt.parse_show(SHOW)
    assert a["Package"] == "busybox-static" and a["Version"] == "1:1.35.0-4+deb12u1+b1"
    assert a["Description"] == "x\ncontinued line"
    assert b["Depends"].startswith("linux-image-6.1.0-50-amd64")
