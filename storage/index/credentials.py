"""Camera credentials at rest: Fernet encryption of camera URLs that carry a user or password.

The key is ``SHARPEYES_SECRET_KEY`` (a Fernet key: 32 bytes, url-safe base64)
when set, else the file ``{data_dir}/secret.key``, created with mode 0600 on
first use. Every process that reads the registry (API nodes, ingest workers)
needs the same key: with several machines, set ``SHARPEYES_SECRET_KEY`` on all.
Losing the key loses the stored camera passwords (not the video): operators
re-enter the URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any, Mapping

from cryptography.fernet import Fernet, InvalidToken

from config.cameras import Camera
from config.redact import redact_url

ENV_KEY = "SHARPEYES_SECRET_KEY"
KEY_FILE = "secret.key"
# Stored values that start with this are Fernet tokens; anything else is a
# plain URL (written before encryption was on, or with no credentials in it).
ENCRYPTED_PREFIX = "fernet:"


class SecretKeyError(RuntimeError):
    """The secret key is missing, malformed or not the one the data was encrypted with."""


class SecretCipher:
    """Encrypts and decrypts stored camera URLs with one Fernet key."""

    def __init__(self, key: bytes | str):
        raw = key.encode() if isinstance(key, str) else key
        try:
            self._fernet = Fernet(raw.strip())
        except (ValueError, TypeError) as exc:
            raise SecretKeyError(
                f"{ENV_KEY} (or {KEY_FILE}) is not a Fernet key: make one with "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from exc
        self._key = raw.strip()

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for another use (token signing), bound to ``purpose``."""
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).digest()

    def encrypt(self, plaintext: str) -> str:
        return ENCRYPTED_PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """Plain text of a stored value; values without the prefix are returned unchanged."""
        if not stored.startswith(ENCRYPTED_PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored[len(ENCRYPTED_PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError(
                f"a stored camera URL was encrypted with another secret key: set {ENV_KEY} "
                "to the key in use when it was stored, or re-enter the camera URL"
            ) from exc

    def seal_url(self, url: str | None) -> str | None:
        """What to store for a camera URL: encrypted when it carries credentials, else as is."""
        if url is None or not has_credentials(url):
            return url
        return self.encrypt(url)


def has_credentials(url: str) -> bool:
    return redact_url(url) != url


def load_cipher(data_dir: Path, environ: Mapping[str, str] | None = None) -> SecretCipher:
    """The process's cipher: ``SHARPEYES_SECRET_KEY``, else ``{data_dir}/secret.key`` (made if absent)."""
    env = os.environ if environ is None else environ
    if env.get(ENV_KEY):
        return SecretCipher(env[ENV_KEY])
    path = Path(data_dir) / KEY_FILE
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SecretKeyError(
                f"{path} is readable by other users (mode {mode:o}): run 'chmod 600 {path}'"
            )
        return SecretCipher(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # Write a private temporary file, then link it into place: link fails when
    # the name exists, so two processes starting at once agree on one key and
    # neither can read a half-written file.
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return SecretCipher(path.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    return SecretCipher(key)


def public_camera_dict(camera: Camera) -> dict[str, Any]:
    """A camera for API answers: every field, with URL credentials shown as ``***``."""
    data = camera.model_dump()
    data["main_url"] = redact_url(camera.main_url)
    if camera.sub_url is not None:
        data["sub_url"] = redact_url(camera.sub_url)
    return data
