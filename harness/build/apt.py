"""Debian packages for the guest: resolve exact versions and fetch verified .debs.

bookworm comes from the host's own apt metadata, read-only. Other suites
(trixie) come through a private apt list in the cache: its own sources file,
lists and package cache, passed to apt with -o options, so the system's sources
and state are never touched and nothing is installed.
"""
from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.paths import cache_dir

MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PRIVATE_SUITES = ("trixie", "bookworm-backports")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str
    filename: str  # the pool path's basename
    suite: str = "bookworm"


def parse_show(text: str) -> list[dict[str, str]]:
    """Stanzas of `apt-cache show` -> one dict of fields each."""
    stanzas: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if fields:
                stanzas.append(fields)
            fields, key = {}, None
        elif line[0].isspace() and key:
            fields[key] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return stanzas


def private_options(suite: str, base: Path) -> list[str]:
    """Pure: the apt -o options that confine apt to a private list for `suite` under `base`."""
    return ["-o", f"Dir::Etc::sourcelist={base / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={base / 'lists'}", "-o", f"Dir::Cache={base / 'cache'}",
            "-o", "APT::Sandbox::User=root"]


def _options(suite: str) -> list[str]:
    if suite == "bookworm":
        return ["-o", "APT::Sandbox::User=root"]
    if suite not in PRIVATE_SUITES:
        raise UserError(f"unknown Debian suite {suite!r}")
    base = cache_dir() / "apt" / suite
    if not (base / "lists" / "ok").exists():  # fetched once; delete the directory to refresh
        (base / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (base / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (base / "sources.list").write_text(f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n")
        _apt(["apt-get", "update", "-q", *private_options(suite, base)])
        (base / "lists" / "ok").touch()
    return private_options(suite, base)


def _apt(args: list[str], cwd: Path | None = None) -> str:
    r = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        raise UserError(f"{args[0]} {args[1]} failed: {last} (run ci/setup.sh, which runs apt-get update)")
    return r.stdout


def _show(names: list[str], suite: str) -> dict[str, dict[str, str]]:
    # One apt-cache call for all names: each call costs ~0.4 s of cache loading.
    got = {f.get("Package"): f for f in
           parse_show(_apt(["apt-cache", *_options(suite), "show", "--no-all-versions", *names]))}
    missing = [n for n in names if n not in got or "SHA256" not in got[n]]
    if missing:
        raise UserError(f"apt ({suite}) has no candidate for {', '.join(missing)}")
    return got


def resolve(names: list[str], suite: str = "bookworm") -> list[Package]:
    got = _show(names, suite)
    return [Package(n, got[n]["Version"], got[n]["SHA256"], Path(got[n]["Filename"]).name, suite)
            for n in names]


def kernel_image_of(meta: str, suite: str = "bookworm") -> str:
    """linux-image-amd64 is a metapackage: the versioned image package it depends on."""
    deps = _show([meta], suite)[meta].get("Depends", "")
    images = [d.strip().split()[0] for d in deps.split(",") if d.strip().startswith("linux-image-")]
    if not images:
        raise UserError(f"{meta}: no linux-image dependency in {deps!r}")
    return images[0]


def fetch(pkg: Package, debs: Path) -> Path:
    """Download into the cache (once) and check the SHA256 apt advertised."""
    path = debs / pkg.filename
    if not path.exists():
        tmp = debs / f".tmp-{pkg.name}"
        tmp.mkdir(parents=True, exist_ok=True)
        _apt(["apt-get", *_options(pkg.suite), "download", "-q", f"{pkg.name}={pkg.version}"], cwd=tmp)
        got = list(tmp.glob("*.deb"))
        if len(got) != 1:
            raise UserError(f"apt-get download {pkg.name}={pkg.version} gave {got}")
        got[0].rename(path)
        tmp.rmdir()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != pkg.sha256:
        path.unlink()
        raise UserError(f"{path.name}: SHA256 {digest} is not the {pkg.sha256} apt advertised")
    return path
