"""The guest image: a Debian kernel plus an initramfs of Debian binaries and our own code.

Kernel + initramfs rather than a disk image: no bootloader, no filesystem
image, no block driver; the guest runs from RAM, which keeps its memory picture
simple (no page cache of a root disk) and boots in seconds under TCG.

Reproducible: the recipe (guest_images/), the exact package versions apt
resolves, and this builder's source form the cache key; the archive is written
deterministically (harness/build/cpio.py). A build happens in a temporary directory
that is renamed into place only when complete, under a lock, so an interrupted
build never leaves an entry that looks complete and parallel test workers build
once.
"""
from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import logging
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

from harness.build import apt, cpio
from harness.errors import UserError
from harness.paths import GUEST_IMAGES, cache_dir

KERNELS = ("6.1", "6.12")  # the recipe's names; any other Debian linux-image version or a local kernel works too
SUITES = ("bookworm",) + apt.PRIVATE_SUITES  # searched in this order for a Debian kernel version
LIBDIR = "lib/x86_64-linux-gnu"
log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class LocalKernel:
    """A kernel of the user's own: a linux-image .deb, or a bzImage with its modules directory."""
    deb: Path | None = None
    bzimage: Path | None = None
    modules: Path | None = None  # lib/modules/<release>, or a root (INSTALL_MOD_PATH) holding lib/modules/


def is_local(kernel: str) -> bool:
    """Pure: a kernel given as a file (a path or a .deb), not as a Debian version."""
    return "/" in kernel or kernel.endswith(".deb")


def bzimage_release(data: bytes) -> str:
    """Pure: the release a bzImage says it is (Documentation/arch/x86/boot.rst: the boot
    header magic 'HdrS' at 0x202, kernel_version at 0x20E, a pointer less 0x200)."""
    if len(data) < 0x210 or data[0x202:0x206] != b"HdrS":
        raise UserError("not an x86 bzImage (no 'HdrS' boot header at 0x202)")
    off = int.from_bytes(data[0x20E:0x210], "little") + 0x200
    text = data[off:off + 256].split(b"\0")[0].decode(errors="replace").split()
    if not text:
        raise UserError("bzImage has no kernel version string")
    return text[0]


def local_kernel(kernel: str, modules: str | None) -> LocalKernel:
    path = Path(kernel).expanduser()
    if not path.is_file():
        raise UserError(f"kernel {kernel}: no such file")
    if path.name.endswith(".deb"):
        if modules:
            raise UserError("--modules goes with a bzImage; a linux-image .deb carries its own modules")
        return LocalKernel(deb=path.resolve())
    bzimage_release(path.read_bytes()[:0x10000])  # a bad file is bad input, before any QEMU
    if modules is not None and not Path(modules).is_dir():
        raise UserError(f"--modules {modules}: not a directory")
    return LocalKernel(bzimage=path.resolve(), modules=Path(modules).resolve() if modules else None)


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


def debian_kernel(version: str) -> apt.Package:
    """A Debian linux-image package by version ('6.1.0-47-cloud-amd64', 'linux-image-6.12.117+deb12-amd64',
    or a metapackage such as '6.12-amd64'), from the first suite of SUITES that has it."""
    name = version if version.startswith("linux-image-") else f"linux-image-{version}"
    for suite in SUITES:
        try:
            pkg = apt.resolve([name], suite)[0]
        except UserError:
            continue
        try:  # a metapackage: the versioned image it depends on
            return apt.resolve([apt.kernel_image_of(name, suite)], suite)[0]
        except UserError:
            return pkg
    raise UserError(f"guest kernel {version!r}: no Debian package {name} in {', '.join(SUITES)} "
                    f"(known names: {', '.join(KERNELS)}, a linux-image version, or a path to a .deb or bzImage)")


def _file_key(h, path: Path) -> None:
    st = path.stat()
    h.update(f"{path} {st.st_size} {st.st_mtime_ns}\n".encode())


def resolve(kernel: str, modules: str | None = None) -> tuple[str, list[apt.Package]]:
    """(cache key, the Debian packages of the image). A Debian kernel's package comes first.

    A local kernel is keyed by its files' contents (the bzImage or .deb) and the
    modules directory's names, sizes and mtimes (a rebuild changes them)."""
    r = _recipe()
    h = _inputs_digest()
    if is_local(kernel):
        src = local_kernel(kernel, modules)
        f = src.deb or src.bzimage
        h.update(f"local {f.name} ".encode() + hashlib.sha256(f.read_bytes()).digest())
        if src.modules:
            for p in sorted(src.modules.rglob("*")):
                if p.is_file():
                    _file_key(h, p)
        pkgs = apt.resolve(r["packages"])
    else:
        if kernel in KERNELS:  # only the kernel comes from the kernel's suite; user space stays bookworm's
            k = r["kernels"][kernel]
            kpkg = apt.resolve([apt.kernel_image_of(k["package"], k["suite"])], k["suite"])[0]
        else:
            kpkg = debian_kernel(kernel)
        pkgs = [kpkg] + apt.resolve(r["packages"])
    for p in pkgs:
        h.update(f"{p.name}={p.version} {p.sha256}\n".encode())
    return h.hexdigest()[:16], pkgs


def label(kernel: str) -> str:
    """Pure: the cache entry's name for a kernel: the version, or 'local-<file name>'."""
    name = f"local-{Path(kernel).name}" if is_local(kernel) else kernel
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", name)[:80]


def images_dir() -> Path:
    d = cache_dir() / "images"
    d.mkdir(exist_ok=True)
    return d


def cached(kernel: str = "6.1", modules: str | None = None) -> Path | None:
    """The cached image's directory for `kernel` if it is built and current, else None."""
    key, _ = resolve(kernel, modules)
    d = images_dir() / f"{label(kernel)}-{key}"
    return d if (d / "manifest.json").exists() else None


def clean() -> list[Path]:
    """Remove every cached image (the .deb cache and apt lists stay); under each entry's lock."""
    removed = []
    for d in sorted(images_dir().iterdir()):
        if d.name.startswith(".lock-"):
            continue
        lock = images_dir() / f".lock-{d.name}"
        with open(lock, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # not while a worker builds or reads it
            shutil.rmtree(d, ignore_errors=True)
        lock.unlink(missing_ok=True)
        removed.append(d)
    return removed


def get(kernel: str = "6.1", modules: str | None = None) -> Image:
    """The cached image for `kernel`, built first if missing. Progress goes to logging."""
    key, pkgs = resolve(kernel, modules)
    images = images_dir()
    name = f"{label(kernel)}-{key}"
    final = images / name
    if not (final / "manifest.json").exists():
        with open(images / f".lock-{name}", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be building it
            if not (final / "manifest.json").exists():
                log.info("building guest image %s (once; cached in %s)", name, images)
                t0 = time.monotonic()
                tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=images))
                try:
                    build_into(tmp, kernel, pkgs, key, modules)
                    os.rename(tmp, final)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                log.info("built guest image in %.1f s", time.monotonic() - t0)
    return load(final)


def load(d: Path) -> Image:
    m = json.loads((d / "manifest.json").read_text())
    return Image(d / "vmlinuz", d / "initrd.cpio", m["cmdline"], m["kernel_release"], m["key"])


# --- the build ---------------------------------------------------------------

def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        r = subprocess.run(["zstd", "-dc", str(path)], capture_output=True)
        if r.returncode:
            raise UserError(f"{path.name}: zstd-compressed modules need the zstd program")
        return r.stdout
    return data


def parse_show_depends(text: str) -> list[str]:
    """Pure: `modprobe --show-depends` output -> the module files to load, in order
    ('insmod PATH [options]' lines; 'builtin NAME' lines need nothing)."""
    return [line.split()[1] for line in text.splitlines() if line.startswith("insmod ")]


def _kmod(tool: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/sbin/{tool}", f"/usr/sbin/{tool}") if os.path.exists(p)), None)
    if not path:
        raise UserError(f"{tool} not found: run ci/setup.sh (installs kmod)")
    return path


def modules_in_load_order(base: Path, release: str, wanted: list[str]) -> list[tuple[str, bytes]]:
    """Wanted modules and their dependencies, dependencies first, as the kernel's own tools
    see them: depmod over base/lib/modules/<release> (written there: base is a scratch
    copy), then `modprobe --show-depends`. Built-in modules need nothing."""
    subprocess.run([_kmod("depmod"), "-b", str(base), release], check=True, capture_output=True, timeout=300)
    order: list[tuple[str, bytes]] = []
    for w in wanted:
        r = subprocess.run([_kmod("modprobe"), "-d", str(base), "-S", release, "--show-depends", w],
                           capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise UserError(f"kernel {release}: module {w} neither built in nor in its modules "
                            f"({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'modprobe failed'})")
        for path in parse_show_depends(r.stdout):
            name = Path(path).name.split(".ko")[0].replace("-", "_")
            if name not in {n for n, _ in order}:
                order.append((name, _read_module(Path(path))))
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


def _module_base(root: Path, release: str) -> Path:
    """The directory holding lib/modules/<release> (bookworm: /, trixie's merged /usr: /usr)."""
    for base in (root, root / "usr"):
        if (base / "lib" / "modules" / release).is_dir():
            return base
    raise UserError(f"kernel {release}: no lib/modules/{release} with its modules")


def _user_modules(src: Path, release: str, dest_root: Path) -> Path:
    """Copy a user's modules (lib/modules/<release>, or a root holding it) into a scratch root
    for depmod, so their directory is never written."""
    candidates = [src / "lib" / "modules" / release, src / "usr" / "lib" / "modules" / release, src]
    found = next((c for c in candidates if c.is_dir() and (c.name == release or any(c.rglob("*.ko*")))), None)
    if found is None:
        raise UserError(f"--modules {src}: no lib/modules/{release} and no .ko files")
    shutil.copytree(found, dest_root / "lib" / "modules" / release, symlinks=False,
                    ignore=shutil.ignore_patterns("build", "source"))
    return dest_root


def build_into(out: Path, kernel: str, pkgs: list[apt.Package], key: str, modules: str | None = None) -> None:
    """Write vmlinuz, initrd.cpio and manifest.json into `out` (an existing directory)."""
    r = _recipe()
    debs = cache_dir() / "debs"
    debs.mkdir(exist_ok=True)
    local = local_kernel(kernel, modules) if is_local(kernel) else None
    with tempfile.TemporaryDirectory(prefix="balloon-e2e-build-") as work:
        root = Path(work) / "root"
        for p in pkgs:
            subprocess.run(["dpkg-deb", "-x", str(apt.fetch(p, debs)), str(root)], check=True)
        if local and local.deb:
            kroot = Path(work) / "kernel"
            subprocess.run(["dpkg-deb", "-x", str(local.deb), str(kroot)], check=True)
        else:
            kroot = root
        if local and local.bzimage:
            vmlinuz_path = local.bzimage
            release = bzimage_release(vmlinuz_path.read_bytes()[:0x10000])
            if local.modules:
                base = _user_modules(local.modules, release, Path(work) / "mods")
                modules = modules_in_load_order(base, release, r["modules"])
            else:
                log.warning("no --modules: %s must have %s built in", vmlinuz_path.name, ", ".join(r["modules"]))
                modules = []
        else:
            vmlinuz = sorted((kroot / "boot").glob("vmlinuz-*"))
            if len(vmlinuz) != 1:
                raise UserError(f"expected one /boot/vmlinuz-* in the kernel package, found {len(vmlinuz)}")
            vmlinuz_path = vmlinuz[0]
            release = vmlinuz_path.name.removeprefix("vmlinuz-")
            modules = modules_in_load_order(_module_base(kroot, release), release, r["modules"])
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
        shutil.copyfile(vmlinuz_path, out / "vmlinuz")
    (out / "initrd.cpio").write_bytes(initrd)
    manifest = {
        "key": key, "kernel": kernel, "kernel_release": release,
        "cmdline": r["cmdline"], "packages": [f"{p.name}={p.version}" for p in pkgs],
        "sha256": {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in ("vmlinuz", "initrd.cpio")},
        "modules": [n for n, _ in modules],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def main() -> None:
    """python -m harness.build.image [KERNEL]: build (or find) the cached image and print its directory."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # to stderr
    img = get(sys.argv[1] if len(sys.argv) > 1 else "6.1")
    print(img.dir)


if __name__ == "__main__":
    main()
