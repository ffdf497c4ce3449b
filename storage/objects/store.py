"""The object store interface. ``local.LocalObjectStore`` and ``s3.S3ObjectStore`` implement it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol


class ObjectStoreUnavailable(RuntimeError):
    """The store could not be reached or refused the request; the caller may retry later."""


class ObjectNotFound(KeyError):
    """No object under that key."""


class InvalidObjectKey(ValueError):
    """A key that is not a clean relative ``/``-separated path (see ``check_key``)."""


MAX_KEY_BYTES = 1024  # the S3 limit on object names


def check_key(key: str) -> str:
    """Return ``key`` if every store can hold it, else raise ``InvalidObjectKey``.

    The same rules apply to every store so that moving from the local directory to
    S3 never meets a key one accepts and the other refuses: non-empty, relative,
    ``/``-separated, no empty, ``.`` or ``..`` parts, no backslash or NUL, and no
    part starting with ``.`` (the local store keeps its temporary and sidecar files
    under dot-names, so user keys must never collide with them).
    """
    if not isinstance(key, str) or not key:
        raise InvalidObjectKey("object key is empty")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidObjectKey(f"object key is longer than {MAX_KEY_BYTES} bytes")
    if "\\" in key or "\0" in key:
        raise InvalidObjectKey(f"object key {key!r} contains a backslash or NUL")
    if key.startswith("/"):
        raise InvalidObjectKey(f"object key {key!r} is absolute; keys are relative paths")
    for part in key.split("/"):
        if not part:
            raise InvalidObjectKey(f"object key {key!r} has an empty path part")
        if part.startswith("."):
            raise InvalidObjectKey(f"object key {key!r}: parts may not start with '.' ('..' would escape the root)")
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is ``""`` or the start of a valid key (may end with ``/``)."""
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None  # as recorded at upload (metadata), when the store kept it


class ObjectStore(Protocol):
    """Where segments and exports live. Keys are ``/``-separated relative paths.

    Every method raises ``InvalidObjectKey`` for a key ``check_key`` refuses, and
    ``ObjectStoreUnavailable`` when the store cannot be reached (or refuses us).
    """

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        """Store the file at ``key``. Idempotent: an object already there with the same
        sha256 and size is left alone; one with different content is replaced.
        Raises ``ObjectStoreUnavailable`` when the store cannot be reached."""

    def put_bytes(self, key: str, data: bytes, sha256: str) -> None:
        """Store ``data`` at ``key`` (small objects: manifests)."""

    def stat(self, key: str) -> ObjectInfo:
        """Size and recorded sha256 of ``key``; ``ObjectNotFound`` if missing."""

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of ``key``. A range past the end of the object is cut
        short at the end (as HTTP ranges are); ``ObjectNotFound`` if missing;
        ``ValueError`` if ``start < 0`` or ``end < start``."""

    def iter_range(self, key: str, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of ``key`` in chunks of at most ``chunk`` bytes, for
        streaming responses. Same range rules as ``get_range``."""

    def delete(self, key: str) -> None:
        """Remove ``key``; no error if it is already gone."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order. ``sha256`` may be
        None here even where ``stat`` has it (S3 listings carry no user metadata)."""

    def presigned_get(self, key: str, expires_seconds: int = 3600) -> str | None:
        """A URL a client can GET without credentials, or None where the store has none."""

    def set_legal_hold(self, key: str, on: bool) -> bool:
        """Set (``on``) or clear the store's own legal hold on ``key``, where it has one
        (S3 object lock). Returns False, doing nothing, where it has none. Optional:
        callers use ``storage.archive.holds.set_store_legal_hold`` so stores without it work."""

    def check(self) -> None:
        """Raise ``ObjectStoreUnavailable`` unless the store answers (and the bucket exists)."""


def check_range(start: int, end: int) -> None:
    """Refuse ranges no store can serve: ``ValueError`` unless ``0 <= start <= end``."""
    if start < 0 or end < start:
        raise ValueError(f"byte range [{start}, {end}) is invalid: need 0 <= start <= end")
