#!/usr/bin/env bash
# Idempotent set-up on Debian 12: the Debian packages the suite needs and the
# project's venv. Safe to run every time; does work only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[setup] $*" >&2; }

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v gcc >/dev/null || need+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)  # the guest workload is linked statically
command -v readelf >/dev/null || need+=(binutils)
command -v dpkg-deb >/dev/null || need+=(dpkg)
[ -x /usr/sbin/depmod ] || [ -x /sbin/depmod ] || need+=(kmod)  # guest modules resolved by depmod/modprobe
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# headless Chromium renders the nightly's page in tests/unit/test_nightly_page.py (which skips without it)
command -v chromium >/dev/null || need+=(chromium)

if [ ${#need[@]} -gt 0 ] || ! apt-cache show --no-all-versions busybox-static >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "setup: need root to apt-get install ${need[*]:-(apt metadata)}" >&2; exit 2; }
  say "apt-get update"
  apt-get update -q >&2
  if [ ${#need[@]} -gt 0 ]; then
    say "apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
  fi
fi

# The venv is brought up to date when pyproject.toml changes.
stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat .venv/.stamp 2>/dev/null)" != "$stamp" ]; then
  say "installing the project into .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # pip warns about this machine's optional local index dirs; those lines are noise.
  .venv/bin/pip install -q -e '.[test]' 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  .venv/bin/python -c 'import harness, qemu.qmp, paramiko, psutil, pytest'
  echo "$stamp" > .venv/.stamp
fi
