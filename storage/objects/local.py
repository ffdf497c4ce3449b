"""``LocalObjectStore``: objects as files under one directory, the embedded default.

Layout: the object ``a/b/c.mp4`` is the file ``ROOT/a/b/c.mp4``. Its recorded
sha256 and size live in a sidecar ``ROOT/a/b/.c.mp4.sha256`` (one line,
``"<sha256> <size>"``): extended attributes are not portable across file systems
and backups, and recomputing a hash on every ``stat`` would read whole segments.
Dot-names are reserved for sidecars and temporary files, which is why
``check_key`` refuses key parts starting with ``.``.

Writes are atomic: a temporary file in the same directory is written, fsync'd
and renamed over the target with ``os.replace``, then the directory is fsync'd so
the rename itself survives a power cut. The sidecar is removed before the data
is replaced and written after it, so a crash in between leaves an object with
no recorded hash (``stat().sha256 is None``), never a wrong one; the next
``put_file`` then rewrites it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from storage.objects.store import (
    InvalidObjectKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStoreUnavailable,
    check_key,
    check_prefix,
    check_range,
)

_SIDECAR_SUFFIX = ".sha256"
_COPY_CHUNK = 1 << 20


class LocalObjectStore:
    """An ``ObjectStore`` on the local file system under ``root`` (created if missing)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    # -- paths ------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        check_key(key)
        path = self.root.joinpath(*key.split("/"))
        # check_key already refuses '..'; this guards against symlinked directories
        # inside the root pointing elsewhere.
        if not path.parent.resolve().is_relative_to(self.root):
            raise InvalidObjectKey(f"object key {key!r} leads outside {self.root} through a symlink")
        return path

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(f".{path.name}{_SIDECAR_SUFFIX}")

    def _unavailable(self, action: str, key: str, exc: OSError) -> ObjectStoreUnavailable:
        hint = "the disk is full" if exc.errno == errno.ENOSPC else "permissions and free space"
        return ObjectStoreUnavailable(
            f"local object store {self.root}: cannot {action} {key!r}: {exc.strerror or exc}; check {hint}"
        )

    # -- writes -----------------------------------------------------------------

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        """Store the file at ``key`` (atomic; skipped when size and sha256 already match)."""
        target = self._path(key)
        size = os.path.getsize(path)
        if self._matches(target, size, sha256):
            return
        with open(path, "rb") as src:
            self._write(key, target, sha256, size, lambda dst: shutil.copyfileobj(src, dst, _COPY_CHUNK))

    def put_bytes(self, key: str, data: bytes, sha256: str) -> None:
        """Store ``data`` at ``key`` (atomic; skipped when size and sha256 already match)."""
        target = self._path(key)
        if self._matches(target, len(data), sha256):
            return
        self._write(key, target, sha256, len(data), lambda dst: dst.write(data))

    def _matches(self, target: Path, size: int, sha256: str) -> bool:
        recorded = self._recorded(target)
        return recorded is not None and recorded == (sha256, size)

    def _write(self, key: str, target: Path, sha256: str, size: int, fill) -> None:  # type: ignore[no-untyped-def]
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            sidecar = self._sidecar(target)
            sidecar.unlink(missing_ok=True)
            _atomic_write(target, fill)
            _atomic_write(sidecar, lambda dst: dst.write(f"{sha256} {size}\n".encode("ascii")))
            _fsync_dir(target.parent)
        except OSError as exc:
            raise self._unavailable("write", key, exc) from exc

    def delete(self, key: str) -> None:
        """Remove ``key`` and its sidecar; empty directories are left (they are cheap and
        removing them would race with concurrent writers in the same hour)."""
        target = self._path(key)
        try:
            target.unlink(missing_ok=True)
            self._sidecar(target).unlink(missing_ok=True)
        except OSError as exc:
            raise self._unavailable("delete", key, exc) from exc

    # -- reads ------------------------------------------------------------------

    def _recorded(self, target: Path) -> tuple[str, int] | None:
        """The sidecar's (sha256, size) when it matches the data file's size."""
        try:
            size = target.stat().st_size
            sha, recorded_size = self._sidecar(target).read_text("ascii").split()
        except (OSError, ValueError):
            return None
        if int(recorded_size) != size:
            return None
        return sha, size

    def stat(self, key: str) -> ObjectInfo:
        """Size and recorded sha256 (None when the sidecar is missing or stale)."""
        target = self._path(key)
        try:
            size = target.stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise self._unavailable("stat", key, exc) from exc
        recorded = self._recorded(target)
        return ObjectInfo(key=key, size=size, sha256=recorded[0] if recorded else None)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``, cut short at the end of the object."""
        return b"".join(self.iter_range(key, start, end, chunk=max(end - start, 1)))

    def iter_range(self, key: str, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Bytes ``[start, end)`` in chunks; the file is opened before the first chunk is
        asked for, so a missing key raises at the call, not mid-stream."""
        check_range(start, end)
        target = self._path(key)
        try:
            f = open(target, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise self._unavailable("read", key, exc) from exc
        return _read_chunks(f, start, end, chunk)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order (byte-wise, like S3)."""
        check_prefix(prefix)
        # Only walk the directory the prefix is certainly inside, not the whole tree.
        base_parts = prefix.split("/")[:-1]
        base = self.root.joinpath(*base_parts)
        if not base.is_dir():
            return iter(())
        return self._walk(base, "/".join(base_parts), prefix)

    def _walk(self, directory: Path, dir_key: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # sidecars and temporary files
            key = f"{dir_key}/{entry.name}" if dir_key else entry.name
            if entry.is_dir(follow_symlinks=False):
                # Descend when the prefix may continue inside this directory.
                if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                try:
                    yield self.stat(key)
                except ObjectNotFound:
                    continue  # deleted while we walked

    def presigned_get(self, key: str, expires_seconds: int = 3600) -> str | None:
        """Always None: local files are served through the API, not by URL."""
        check_key(key)
        return None

    def set_legal_hold(self, key: str, on: bool) -> bool:
        """Always False: a directory has no object lock. Legal holds on the local store
        are kept by the index alone (retention skips held segments)."""
        check_key(key)
        return False

    def check(self) -> None:
        """Create the root if needed and make sure it is a writable directory."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root, prefix=".check-"):
                pass
        except OSError as exc:
            raise ObjectStoreUnavailable(
                f"local object store {self.root} is not writable: {exc.strerror or exc}; "
                "check SHARPEYES_OBJECTS_DIR, permissions and free space"
            ) from exc


def _read_chunks(f, start: int, end: int, chunk: int) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
    with f:
        f.seek(start)
        remaining = end - start
        while remaining > 0:
            data = f.read(min(chunk, remaining))
            if not data:
                return  # past the end of the object
            remaining -= len(data)
            yield data


def _atomic_write(target: Path, fill) -> None:  # type: ignore[no-untyped-def]
    """Write through ``fill(file)`` to a temporary sibling, fsync, then rename over ``target``."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as dst:
            fill(dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
