"""guestfacts.start_facts: the run's first reads in one SSH command, split again."""
import subprocess

from harness.measure import guestfacts

IOMEM = "00001000-0009fbff : System RAM\n00100000-7ffdffff : System RAM\n"


class ShellGuest:
    """Runs the command in a local shell over fake /sys and /proc files (the command's own
    separators and parsing are what is tested)."""

    def __init__(self, tmp):
        self.tmp = tmp

    def run(self, cmd):
        cmd = (cmd.replace("/sys/bus/virtio/devices", f"{self.tmp}/virtio")
               .replace(guestfacts.ORDER_PARAM, f"{self.tmp}/order").replace("/proc/iomem", f"{self.tmp}/iomem"))
        out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, check=True).stdout
        return type("R", (), {"stdout": out})()


def test_start_facts_splits_one_commands_output(tmp_path):
    for name, dev, bits in (("virtio0", "0x0001", "1" * 8), ("virtio1", "0x0005", "00000100")):
        (tmp_path / "virtio" / name).mkdir(parents=True)
        (tmp_path / "virtio" / name / "device").write_text(dev + "\n")
        (tmp_path / "virtio" / name / "features").write_text(bits + "\n")
    (tmp_path / "order").write_text("9\n")
    (tmp_path / "iomem").write_text(IOMEM)
    assert guestfacts.start_facts(ShellGuest(tmp_path)) == (True, 9, IOMEM)
    (tmp_path / "virtio" / "virtio1" / "features").write_text("00000000\n")
    assert guestfacts.start_facts(ShellGuest(tmp_path))[0] is False
