"""The site's Ed25519 export signing key: created on first use, kept under the data dir.

``{data_dir}/export_signing_key.pem`` holds the private key (PKCS#8 PEM, mode
0600). Every export manifest is signed with it; anyone can check a manifest
with the public key (``GET /api/keys/export``, or ``public_key_pem``) and its
key id, the SHA-256 of the raw 32-byte public key in hex.

With several API nodes, copy the same file to each: manifests signed by
another key fail verification as "wrong key". Losing the key does not void
old manifests (their public key still verifies them); keep the public keys of
retired keys with the case files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE = "export_signing_key.pem"
ALGORITHM = "Ed25519"


class SigningKeyError(RuntimeError):
    """The signing key file is unreadable, exposed or not an Ed25519 key."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw public key: names the key in manifests."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    """The public key as SubjectPublicKeyInfo PEM (what ``openssl pkey -pubin`` reads)."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(pem: bytes | str) -> Ed25519PublicKey:
    """A public key from PEM; ``SigningKeyError`` if it is not Ed25519. A private key PEM
    is accepted too (its public half is returned), so ``verify --key`` takes either."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"the key is {type(key).__name__}, not Ed25519")
    return key


def signing_key_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE


def load_signing_key(data_dir: Path, create: bool = True) -> Ed25519PrivateKey:
    """The site's private signing key from ``{data_dir}/export_signing_key.pem``.

    Made on first use (``create``) with mode 0600. Refuses a file other users
    can read: a leaked signing key lets anyone forge evidence manifests.
    """
    return load_key_file(signing_key_path(data_dir), create)


def load_key_file(path: Path, create: bool = True) -> Ed25519PrivateKey:
    """An Ed25519 private key from the PEM file ``path`` (made, mode 0600, when ``create``);
    refused when other users can read it."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise SigningKeyError(
                f"{path} does not exist: run an export once to create it, or copy the site's key there"
            )
        return _create(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SigningKeyError(f"{path} is readable by other users (mode {mode:o}): run 'chmod 600 {path}'")
    return _read(path)


def _read(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise SigningKeyError(f"{path} is not a readable PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def _create(path: Path) -> Ed25519PrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Private temporary file, then link into place: link fails when the name exists,
    # so two processes starting at once agree on one key (as storage.index.credentials does).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read(path)
    finally:
        tmp.unlink(missing_ok=True)
    return key
