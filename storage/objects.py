"""The object store interface. ``local.LocalObjectStore`` and ``s3.S3ObjectStore`` implement it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol


class ObjectStoreUnavailable(RuntimeError):
    """The store could not be reached or refused the request; the caller may retry later."""


class ObjectNotFound(KeyError):
    """No object under that key."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None  # as recorded at upload (metadata), when the store kept it


class ObjectStore(Protocol):
    """Where segments and exports live. Keys are ``/``-separated relative paths."""

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        """Store the file at ``key``. Idempotent: an object already there with the same
        sha256 and size is left alone; one with different content is replaced.
        Raises ``ObjectStoreUnavailable`` when the store cannot be reached."""

    def put_bytes(self, key: str, data: bytes, sha256: str) -> None:
        """Store ``data`` at ``key`` (small objects: manifests)."""

    def stat(self, key: str) -> ObjectInfo:
        """Size and recorded sha256 of ``key``; ``ObjectNotFound`` if missing."""

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``key``."""

    def iter_range(self, key: str, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of ``key`` in chunks, for streaming responses."""

    def delete(self, key: str) -> None:
        """Remove ``key``; no error if it is already gone."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``."""

    def presigned_get(self, key: str, expires_seconds: int = 3600) -> str | None:
        """A URL a client can GET without credentials, or None where the store has none."""

    def check(self) -> None:
        """Raise ``ObjectStoreUnavailable`` unless the store answers (and the bucket exists)."""
