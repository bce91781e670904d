"""The guest image: a Debian kernel plus an initramfs of Debian binaries and our own code.

Kernel + initramfs rather than a disk image: no bootloader, no filesystem
image, no block driver; the guest runs from RAM, which keeps its memory picture
simple (no page cache of a root disk) and boots in seconds under TCG.

Reproducible: the recipe (guest_images/), the exact package versions apt
resolves, and this builder's source form the cache key; the archive is written
deterministically (harness/cpio.py). A build happens in a temporary directory
that is renamed into place only when complete, under a lock, so an interrupted
build never leaves an entry that looks complete and parallel test workers build
once.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import apt, cpio
from .errors import UserError
from .paths import GUEST_IMAGES, cache_dir

KERNELS = ("6.1", "6.12")
LIBDIR = "lib/x86_64-linux-gnu"


@dataclass(frozen=True)
class Image:
    kernel: Path
    initrd: Path
    cmdline: str
    kernel_release: str
    key: str

    @property
    def dir(self) -> Path:
        return self.kernel.parent


def _recipe() -> dict:
    return json.loads((GUEST_IMAGES / "recipe.json").read_text())


def _inputs_digest() -> hashlib._Hash:
    """Everything of ours that goes into the image."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    files = sorted(p for p in GUEST_IMAGES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += [here / "image.py", here / "cpio.py"]
    for p in files:
        h.update(str(p.relative_to(p.parents[1] if p.parent == here else GUEST_IMAGES)).encode())
        h.update(b"\0" + p.read_bytes() + b"\0")
    h.update(subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.encode())
    return h


def resolve(kernel: str) -> tuple[str, list[apt.Package]]:
    if kernel not in KERNELS:
        raise UserError(f"unknown guest kernel {kernel!r}; known: {', '.join(KERNELS)}")
    r = _recipe()
    k = r["kernels"][kernel]
    # Only the kernel comes from the kernel's suite; user space stays bookworm's.
    pkgs = apt.resolve([apt.kernel_image_of(k["package"], k["suite"])], k["suite"]) + apt.resolve(r["packages"])
    h = _inputs_digest()
    for p in pkgs:
        h.update(f"{p.name}={p.version} {p.sha256}\n".encode())
    return h.hexdigest()[:16], pkgs


def get(kernel: str = "6.1", progress=print) -> Image:
    """The cached image for `kernel`, built first if missing."""
    key, pkgs = resolve(kernel)
    images = cache_dir() / "images"
    images.mkdir(exist_ok=True)
    final = images / f"{kernel}-{key}"
    if not (final / "manifest.json").exists():
        with open(images / f".lock-{kernel}-{key}", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be building it
            if not (final / "manifest.json").exists():
                progress(f"building guest image {final.name} (once; cached in {images})")
                t0 = time.monotonic()
                tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{kernel}-", dir=images))
                try:
                    build_into(tmp, kernel, pkgs, key)
                    os.rename(tmp, final)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                progress(f"built guest image in {time.monotonic() - t0:.1f} s")
    return load(final)


def load(d: Path) -> Image:
    m = json.loads((d / "manifest.json").read_text())
    return Image(d / "vmlinuz", d / "initrd.cpio", m["cmdline"], m["kernel_release"], m["key"])


# --- the build ---------------------------------------------------------------

def _module_deps(ko: bytes) -> list[str]:
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko)
    return [d for d in (m.group(1).decode().split(",") if m else []) if d]


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.name.endswith(".xz") else data


def modules_in_load_order(moddir: Path, wanted: list[str]) -> list[tuple[str, bytes]]:
    """Wanted modules and their dependencies (from .modinfo), dependencies first."""
    index = {}
    for p in moddir.rglob("*.ko*"):
        index[p.name.split(".ko")[0].replace("-", "_")] = p
    builtin = set()  # 6.12 builds the virtio core in: nothing to load for those
    if (moddir / "modules.builtin").exists():
        builtin = {Path(line).name.split(".ko")[0].replace("-", "_")
                   for line in (moddir / "modules.builtin").read_text().split()}
    order: list[tuple[str, bytes]] = []
    done: set[str] = set()

    def visit(name: str, stack: tuple[str, ...] = ()):
        name = name.replace("-", "_")
        if name in done or name in builtin:
            return
        if name in stack or name not in index:
            raise UserError(f"kernel module {name} missing or in a cycle ({' > '.join(stack)})")
        data = _read_module(index[name])
        for dep in _module_deps(data):
            visit(dep, stack + (name,))
        done.add(name)
        order.append((name, data))

    for w in wanted:
        visit(w)
    return order


def _needed(path: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def _libraries(root: Path, binaries: list[Path]) -> dict[str, bytes]:
    """soname -> contents, for everything the binaries load, transitively."""
    dirs = [root / LIBDIR, root / "usr" / LIBDIR]
    libs: dict[str, bytes] = {}
    todo = [n for b in binaries for n in _needed(b)] + ["ld-linux-x86-64.so.2"]
    while todo:
        so = todo.pop()
        if so in libs:
            continue
        found = next((d / so for d in dirs if (d / so).exists()), None)
        if found is None:
            raise UserError(f"guest image: no package in the recipe provides {so}")
        libs[so] = found.resolve().read_bytes()
        todo += _needed(found.resolve())
    return libs


def _compile_tools(work: Path) -> dict[str, bytes]:
    """Each guest_images/src/NAME.c -> a static NAME for the guest's /usr/bin."""
    tools = {}
    for src in sorted((GUEST_IMAGES / "src").glob("*.c")):
        out = work / src.stem
        subprocess.run(["gcc", "-static", "-O2", "-Wall", "-o", str(out), str(src),
                        f"-ffile-prefix-map={GUEST_IMAGES}=.", "-Wl,--build-id=none"], check=True)
        tools[src.stem] = out.read_bytes()
    return tools


def build_into(out: Path, kernel: str, pkgs: list[apt.Package], key: str) -> None:
    """Write vmlinuz, initrd.cpio and manifest.json into `out` (an existing directory)."""
    r = _recipe()
    debs = cache_dir() / "debs"
    with tempfile.TemporaryDirectory(prefix="balloon-e2e-build-") as work:
        root = Path(work) / "root"
        for p in pkgs:
            subprocess.run(["dpkg-deb", "-x", str(apt.fetch(p, debs)), str(root)], check=True)
        vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
        if len(vmlinuz) != 1:
            raise UserError(f"expected one kernel in {pkgs[0].name}, found {vmlinuz}")
        release = vmlinuz[0].name.removeprefix("vmlinuz-")
        # bookworm ships modules in /lib/modules, trixie (merged /usr) in /usr/lib/modules
        moddir = next(d for d in (root / "lib" / "modules" / release, root / "usr" / "lib" / "modules" / release)
                      if d.is_dir())
        modules = modules_in_load_order(moddir, r["modules"])
        binaries = [root / b.lstrip("/") for b in r["binaries"]]
        tools = _compile_tools(Path(work))
        busybox = (root / "bin" / "busybox").read_bytes()
        applets = subprocess.run([str(root / "bin" / "busybox"), "--list"], capture_output=True,
                                 text=True, check=True).stdout.split()

        e = [cpio.directory(d) for d in (
            "bin", "sbin", "dev", "etc", "etc/dropbear", "lib", "lib64", LIBDIR, "lib/modules",
            "proc", "sys", "tmp", "run", "root", "usr", "usr/bin", "usr/sbin")]
        e.append(cpio.chardev("dev/console", 5, 1))
        e.append(cpio.file("bin/busybox", busybox, 0o755))
        e += [cpio.symlink(f"bin/{a}", "busybox") for a in applets if a not in ("busybox",)]
        e.append(cpio.symlink("sbin/init", "../bin/busybox"))
        e += [cpio.file(b.lstrip("/"), (root / b.lstrip("/")).read_bytes(), 0o755) for b in r["binaries"]]
        e += [cpio.file(f"{LIBDIR}/{so}", data, 0o755) for so, data in sorted(_libraries(root, binaries).items())]
        e.append(cpio.symlink("lib64/ld-linux-x86-64.so.2", f"../{LIBDIR}/ld-linux-x86-64.so.2"))
        e += [cpio.file(f"lib/modules/{n}.ko", d) for n, d in modules]
        e.append(cpio.file("etc/modules", "".join(f"{n}\n" for n, _ in modules).encode()))
        e += [cpio.file(f"usr/bin/{name}", data, 0o755) for name, data in tools.items()]
        rootfs = GUEST_IMAGES / "rootfs"
        for p in sorted(rootfs.rglob("*")):
            if p.is_file():
                perm = 0o755 if os.access(p, os.X_OK) else (0o600 if p.name == "shadow" else 0o644)
                e.append(cpio.file(str(p.relative_to(rootfs)), p.read_bytes(), perm))
        initrd = cpio.archive(e)
        shutil.copyfile(vmlinuz[0], out / "vmlinuz")
    (out / "initrd.cpio").write_bytes(initrd)
    manifest = {
        "key": key, "kernel": kernel, "kernel_release": release,
        "cmdline": r["cmdline"], "packages": [f"{p.name}={p.version}" for p in pkgs],
        "sha256": {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in ("vmlinuz", "initrd.cpio")},
        "modules": [n for n, _ in modules],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def main() -> None:
    """python -m harness.image [KERNEL]: build (or find) the cached image and print its directory."""
    img = get(sys.argv[1] if len(sys.argv) > 1 else "6.1")
    print(img.dir)


if __name__ == "__main__":
    main()
