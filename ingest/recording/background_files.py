"""Spool files written off the event loop: one writer thread per ingest loop.

A native ingest loop serves many cameras; a ``write`` or an ``fsync`` on it would stall
every one of them (an fsync on a busy disk takes tens of milliseconds). So a segment's
bytes go to a queue served by one thread, in order: the loop only learns sizes (which it
knows itself) and, at the end of a segment, waits for that file's last write, fsync and
hash (once a segment, not once a frame).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Callable, Sequence


class BackgroundFiles:
    """The writer thread of one ingest loop."""

    def __init__(self, name: str = "spool-writer") -> None:
        self._q: queue.SimpleQueue[tuple[Callable[[], object], Future[object]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.pending = 0

    def submit(self, fn: Callable[[], object]) -> Future[object]:
        fut: Future[object] = Future()
        self.pending += 1
        self._q.put((fn, fut))
        return fut

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            fn, fut = item
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                fut.set_exception(exc)
            finally:
                self.pending -= 1


IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def writev_all(fd: int, parts: Sequence[bytes]) -> None:
    """Write every piece of ``parts`` in order, ``IOV_MAX`` pieces a ``writev``, short writes resumed."""
    i, n = 0, len(parts)
    while i < n:
        batch = parts[i:i + IOV_MAX]
        written = os.writev(fd, batch)
        for part in batch:
            if written >= len(part):
                written -= len(part)
                i += 1
                continue
            rest = memoryview(part)[written:]  # a short write stopped inside this piece
            while rest:
                rest = rest[os.write(fd, rest):]
            i += 1
            break


class BackgroundHashingFile:
    """``HashingFile``'s interface (write, sync, close, size, sha256) with the I/O on a ``BackgroundFiles``."""

    def __init__(self, path: Path, files: BackgroundFiles) -> None:
        self._files = files
        self._f = open(path, "wb", buffering=0)
        self._sha = hashlib.sha256()
        self.size = 0
        self._error: BaseException | None = None
        self._sha256 = ""

    def write(self, data: bytes) -> int:
        self.size += len(data)
        f, sha = self._f, self._sha

        def write() -> None:
            view = memoryview(data)
            while view:
                n = f.write(view)
                view = view[n or 0:]
            sha.update(data)
        self._files.submit(write).add_done_callback(self._check)
        return len(data)

    def write_parts(self, parts: Sequence[bytes], sync: bool = False) -> int:
        """``write(b"".join(parts))`` without the join: ``writev`` on the writer thread; with
        ``sync``, the fsync of ``sync()`` follows in the same job (one wake-up of the writer a GOP)."""
        size = sum(map(len, parts))
        self.size += size
        fd, sha = self._f.fileno(), self._sha

        def write() -> None:
            writev_all(fd, parts)
            for part in parts:
                sha.update(part)
            if sync:
                os.fsync(fd)
        self._files.submit(write).add_done_callback(self._check)
        return size

    def sync(self) -> None:
        """fsync in the background, after the writes queued so far (a GOP on disk)."""
        f = self._f
        self._files.submit(lambda: os.fsync(f.fileno())).add_done_callback(self._check)

    def _check(self, fut: Future[object]) -> None:
        if fut.exception() is not None and self._error is None:
            self._error = fut.exception()

    def close(self) -> None:
        """Wait for every queued write, fsync and close; a write error is raised here."""
        if self._f.closed:
            return
        f = self._f

        def close() -> None:
            try:
                os.fsync(f.fileno())
            finally:
                f.close()
        self._files.submit(close).result(60)
        if self._error is not None:
            raise OSError(f"writing {self._f.name} failed: {self._error}") from self._error
        self._sha256 = self._sha.hexdigest()

    @property
    def sha256(self) -> str:
        return self._sha256 or self._sha.hexdigest()
