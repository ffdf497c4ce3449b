"""The spool writer thread's files: pieces written with ``writev`` land as their join, hashed alike."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ingest.recording.background_files import IOV_MAX, BackgroundFiles, BackgroundHashingFile, writev_all


def test_pieces_past_iov_max_are_written_in_order(tmp_path: Path) -> None:
    parts = [bytes([i % 251]) * (1 + i % 7) for i in range(IOV_MAX * 2 + 5)]
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        writev_all(fd, parts)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(parts)


def test_write_parts_and_write_give_the_same_file_and_hash(tmp_path: Path) -> None:
    files = BackgroundFiles("test-writer")
    try:
        parts = [b"moof" * 10, b"\x00\x00\x00\x08mdat", os.urandom(70_000), b"", os.urandom(5)]
        a = BackgroundHashingFile(tmp_path / "a", files)
        assert a.write_parts(parts, sync=True) == sum(map(len, parts)) == a.size
        a.write(b"tail")
        a.close()
        b = BackgroundHashingFile(tmp_path / "b", files)
        b.write(b"".join(parts) + b"tail")
        b.close()
    finally:
        files.close()
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert a.sha256 == b.sha256 == hashlib.sha256((tmp_path / "a").read_bytes()).hexdigest()
