"""Debian packages for the guest: resolve exact versions and fetch verified .debs.

Uses the host's apt metadata read-only (apt-cache show, apt-get download); the
host system is never modified.
"""
from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str
    filename: str  # the pool path's basename


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


def _apt(args: list[str], cwd: Path | None = None) -> str:
    r = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        raise UserError(f"{' '.join(args)} failed: {r.stderr.strip().splitlines()[-1:] or r.returncode}"
                        " (run ci/setup.sh, which runs apt-get update)")
    return r.stdout


def _show(names: list[str]) -> dict[str, dict[str, str]]:
    # One apt-cache call for all names: each call costs ~0.4 s of cache loading.
    got = {f.get("Package"): f for f in
           parse_show(_apt(["apt-cache", "show", "--no-all-versions", *names]))}
    missing = [n for n in names if n not in got or "SHA256" not in got[n]]
    if missing:
        raise UserError(f"apt has no candidate for {', '.join(missing)}")
    return got


def resolve(names: list[str]) -> list[Package]:
    got = _show(names)
    return [Package(n, got[n]["Version"], got[n]["SHA256"], Path(got[n]["Filename"]).name)
            for n in names]


def kernel_image_of(meta: str) -> str:
    """linux-image-amd64 is a metapackage: the versioned image package it depends on."""
    deps = _show([meta])[meta].get("Depends", "")
    images = [d.strip().split()[0] for d in deps.split(",") if d.strip().startswith("linux-image-")]
    if not images:
        raise UserError(f"{meta}: no linux-image dependency in {deps!r}")
    return images[0]


def fetch(pkg: Package, debs: Path) -> Path:
    """Download into the cache (once) and check the SHA256 apt advertised."""
    path = debs / pkg.filename
    if not path.exists():
        debs.mkdir(parents=True, exist_ok=True)
        tmp = debs / f".tmp-{pkg.name}"
        tmp.mkdir(exist_ok=True)
        _apt(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
              f"{pkg.name}={pkg.version}"], cwd=tmp)
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
