"""The SSH key pair of this cache: made once, 0600, never in the repository."""
from __future__ import annotations

import io
import os

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.paths import cache_dir


def key_pair() -> tuple[paramiko.PKey, str]:
    """(private key, base64 of the public key) for the guest's authorized_keys."""
    d = cache_dir() / "ssh"
    d.mkdir(mode=0o700, exist_ok=True)
    path = d / "id_ed25519"
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        tmp = d / f".id_ed25519.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)  # atomic: parallel workers agree on one key
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(path.read_text()))
    return key, key.get_base64()
