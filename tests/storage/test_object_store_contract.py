"""One contract, two object stores: the local directory and S3 (moto's server)."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from config.settings import Settings
from storage import (
    InvalidObjectKey,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreUnavailable,
    S3ObjectStore,
    open_object_store,
    segment_key,
)
from storage.objects.s3 import MIN_PART_SIZE
from tests.support.s3server import MotoS3Server, free_port


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def s3_store(server: MotoS3Server, bucket: str, **kw: object) -> S3ObjectStore:
    return S3ObjectStore(
        server.endpoint, server.access_key, server.secret_key, bucket, region=server.region, **kw  # type: ignore[arg-type]
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalObjectStore(tmp_path / "objects")
    else:
        server: MotoS3Server = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        yield s3_store(server, bucket, part_size=MIN_PART_SIZE)


def write(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


KEY = "cam-1/main/2026/11/27/19/1764271857000000-60000.mp4"
DATA = bytes(range(256)) * 40  # 10 KiB, every byte value


def test_put_stat_get(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file(KEY, write(tmp_path, DATA), sha(DATA))
    info = store.stat(KEY)
    assert (info.key, info.size, info.sha256) == (KEY, len(DATA), sha(DATA))
    assert store.get_range(KEY, 0, len(DATA)) == DATA
    assert store.get_range(KEY, 100, 3000) == DATA[100:3000]
    assert store.get_range(KEY, 5, 5) == b""
    # A range past the end is cut short, as an HTTP range is.
    assert store.get_range(KEY, len(DATA) - 10, len(DATA) + 100) == DATA[-10:]
    assert store.get_range(KEY, len(DATA), len(DATA) + 5) == b""


def test_iter_range_chunks(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file(KEY, write(tmp_path, DATA), sha(DATA))
    chunks = list(store.iter_range(KEY, 10, 5010, chunk=1000))
    assert b"".join(chunks) == DATA[10:5010]
    assert all(len(c) <= 1000 for c in chunks)
    # Stopping early must not leak: the store stays usable afterwards.
    for _ in range(20):
        it = store.iter_range(KEY, 0, len(DATA), chunk=100)
        next(it)
        it.close()  # type: ignore[attr-defined]
    assert store.get_range(KEY, 0, 4) == DATA[:4]


def test_put_bytes(store: ObjectStore) -> None:
    store.put_bytes("exports/x/manifest.json", b"{}", sha(b"{}"))
    assert store.stat("exports/x/manifest.json").sha256 == sha(b"{}")
    assert store.get_range("exports/x/manifest.json", 0, 2) == b"{}"


def test_missing_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.stat("cam-1/main/nothing.mp4")
    with pytest.raises(ObjectNotFound):
        store.get_range("cam-1/main/nothing.mp4", 0, 10)
    with pytest.raises(ObjectNotFound):
        store.iter_range("cam-1/main/nothing.mp4", 0, 10)
    with pytest.raises(ObjectNotFound):
        store.get_range("cam-1/main/nothing.mp4", 0, 0)
    store.delete("cam-1/main/nothing.mp4")  # no error


def test_bad_ranges(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file(KEY, write(tmp_path, DATA), sha(DATA))
    with pytest.raises(ValueError):
        store.get_range(KEY, -1, 10)
    with pytest.raises(ValueError):
        store.get_range(KEY, 10, 5)


def test_delete(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file(KEY, write(tmp_path, DATA), sha(DATA))
    store.delete(KEY)
    with pytest.raises(ObjectNotFound):
        store.stat(KEY)
    assert list(store.list()) == []
    store.delete(KEY)  # already gone: fine


def test_list(store: ObjectStore) -> None:
    keys = [
        "cam-1/main/2026/11/27/19/1-1.mp4",
        "cam-1/main/2026/11/27/20/2-1.mp4",
        "cam-1/sub/2026/11/27/19/1-1.mp4",
        "cam-10/main/2026/11/27/19/1-1.mp4",
        "cam-2/main/2026/11/27/19/1-1.mp4",
    ]
    for i, k in enumerate(reversed(keys)):
        data = b"x" * (i + 1)
        store.put_bytes(k, data, sha(data))
    assert [o.key for o in store.list()] == keys
    assert [o.key for o in store.list("cam-1/")] == keys[:3]
    # A prefix is a string prefix, not a directory: cam-1 also matches cam-10.
    assert [o.key for o in store.list("cam-1")] == keys[:4]
    assert [o.key for o in store.list("cam-1/main/2026/11/27/1")] == keys[:1]
    assert [o.key for o in store.list("cam-3/")] == []
    sizes = {o.key: o.size for o in store.list()}
    assert sizes[keys[-1]] == 1 and sizes[keys[0]] == 5


def test_put_is_idempotent(store: ObjectStore, tmp_path: Path) -> None:
    src = write(tmp_path, DATA)
    store.put_file(KEY, src, sha(DATA))
    before = store.stat(KEY)
    if isinstance(store, LocalObjectStore):
        target = store.root / KEY
        inode = target.stat().st_ino
    store.put_file(KEY, src, sha(DATA))
    assert store.stat(KEY) == before
    if isinstance(store, LocalObjectStore):
        assert target.stat().st_ino == inode  # not rewritten


def test_put_replaces_different_content(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file(KEY, write(tmp_path, DATA), sha(DATA))
    other = DATA[::-1] + b"more"
    store.put_file(KEY, write(tmp_path, other, "other.bin"), sha(other))
    info = store.stat(KEY)
    assert (info.size, info.sha256) == (len(other), sha(other))
    assert store.get_range(KEY, 0, info.size) == other
    # Same size, different content is replaced too.
    same_size = bytes(len(other))
    store.put_file(KEY, write(tmp_path, same_size, "zeros.bin"), sha(same_size))
    assert store.stat(KEY).sha256 == sha(same_size)
    assert store.get_range(KEY, 0, 16) == bytes(16)


def test_big_file_multipart(store: ObjectStore, tmp_path: Path) -> None:
    # 4.5 parts of the minimum part size: the S3 store uploads it in 5 parts.
    data = os.urandom(MIN_PART_SIZE * 4 + MIN_PART_SIZE // 2)
    digest = sha(data)
    store.put_file(KEY, write(tmp_path, data), digest)
    info = store.stat(KEY)
    assert (info.size, info.sha256) == (len(data), digest)
    edge = MIN_PART_SIZE  # across the first part boundary
    assert store.get_range(KEY, edge - 7, edge + 7) == data[edge - 7 : edge + 7]
    assert sha(b"".join(store.iter_range(KEY, 0, len(data)))) == digest
    if isinstance(store, S3ObjectStore):
        # A multipart upload's ETag ends in "-<number of parts>".
        assert store._client.stat_object(store.bucket, KEY).etag.endswith("-5")


@pytest.mark.parametrize(
    "key",
    ["", "/abs/key.mp4", "../escape.mp4", "a/../../escape.mp4", "a//b.mp4", "a/./b.mp4", "a/.hidden",
     "a/b/", "a\\b.mp4", "a\0b", "x" * 1100],
)
def test_bad_keys_rejected(store: ObjectStore, tmp_path: Path, key: str) -> None:
    src = write(tmp_path, b"data")
    with pytest.raises(InvalidObjectKey):
        store.put_file(key, src, sha(b"data"))
    with pytest.raises(InvalidObjectKey):
        store.put_bytes(key, b"data", sha(b"data"))
    with pytest.raises(InvalidObjectKey):
        store.stat(key)
    with pytest.raises(InvalidObjectKey):
        store.get_range(key, 0, 1)
    with pytest.raises(InvalidObjectKey):
        store.delete(key)
    if isinstance(store, LocalObjectStore):
        assert not (tmp_path / "escape.mp4").exists()


def test_check(store: ObjectStore) -> None:
    store.check()


def test_local_presigned_is_none(tmp_path: Path) -> None:
    assert LocalObjectStore(tmp_path).presigned_get(KEY) is None


def test_local_no_temp_files_left(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    store.put_bytes(KEY, DATA, sha(DATA))
    store.put_bytes(KEY, b"new", sha(b"new"))
    names = sorted(p.name for p in (tmp_path / "objects").rglob("*") if p.is_file())
    assert names == [".1764271857000000-60000.mp4.sha256", "1764271857000000-60000.mp4"]


def test_local_stale_sidecar_means_unknown_hash(tmp_path: Path) -> None:
    # A crash between the data rename and the sidecar write leaves the sidecar
    # missing; a file changed behind our back leaves it stale. Neither may claim a hash.
    store = LocalObjectStore(tmp_path)
    store.put_bytes(KEY, DATA, sha(DATA))
    (tmp_path / KEY).write_bytes(b"changed")
    assert store.stat(KEY).sha256 is None
    store.put_bytes(KEY, DATA, sha(DATA))  # rewritten, not skipped
    assert store.get_range(KEY, 0, len(DATA)) == DATA


def test_local_symlink_escape_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "objects"
    root.mkdir()
    (root / "cam").symlink_to(outside)
    with pytest.raises(InvalidObjectKey):
        LocalObjectStore(root).put_bytes("cam/x.mp4", b"x", sha(b"x"))
    assert list(outside.iterdir()) == []


def test_s3_presigned_get(s3_server: MotoS3Server, s3_bucket: str) -> None:
    store = s3_store(s3_server, s3_bucket)
    store.put_bytes(KEY, DATA, sha(DATA))
    url = store.presigned_get(KEY, expires_seconds=60)
    assert url is not None and s3_server.secret_key not in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == DATA


def test_s3_creates_missing_bucket(s3_server: MotoS3Server) -> None:
    s3_server.start()
    store = s3_store(s3_server, s3_server.new_bucket_name())
    assert list(store.list()) == []
    store.put_bytes("a/b", b"x", sha(b"x"))
    assert [o.key for o in store.list()] == ["a/b"]


def test_s3_unreachable_fails_fast(tmp_path: Path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there
    secret = "very-secret-key-value"
    store = S3ObjectStore(endpoint, "access", secret, "bucket", region="us-east-1", timeout_seconds=2, retries=1)
    src = write(tmp_path, DATA)
    for op in (store.check, lambda: store.put_file(KEY, src, sha(DATA)), lambda: store.stat(KEY),
               lambda: store.get_range(KEY, 0, 10), lambda: list(store.list())):
        t0 = time.monotonic()
        with pytest.raises(ObjectStoreUnavailable) as info:
            op()
        assert time.monotonic() - t0 < 5
        message = str(info.value)
        assert endpoint in message and "SHARPEYES_S3_ENDPOINT" in message
        assert secret not in message


def test_s3_bad_bucket_name_refused_at_start() -> None:
    with pytest.raises(ValueError, match="SHARPEYES_S3_BUCKET"):
        S3ObjectStore("127.0.0.1:9", "a", "b", "No_Such")


def test_s3_part_size_floor() -> None:
    with pytest.raises(ValueError):
        S3ObjectStore("127.0.0.1:9", "a", "b", "bucket", part_size=MIN_PART_SIZE - 1)


def test_s3_bad_credentials(s3_server: MotoS3Server, s3_bucket: str) -> None:
    store = S3ObjectStore(s3_server.endpoint, "AKIA-WRONG", "wrong-secret", s3_bucket, region=s3_server.region)
    # moto accepts any credentials by default; this pins only that nothing leaks.
    try:
        store.check()
    except ObjectStoreUnavailable as exc:
        assert "wrong-secret" not in str(exc)


def test_s3_restart_loses_data(s3_server: MotoS3Server, s3_bucket: str) -> None:
    """Documents the fixture: after stop/start the endpoint is back, but empty."""
    store = s3_store(s3_server, s3_bucket)
    store.put_bytes("k", b"v", sha(b"v"))
    s3_server.stop()
    with pytest.raises(ObjectStoreUnavailable):
        store.stat("k")
    s3_server.start()
    store.check()  # recreates the bucket
    with pytest.raises(ObjectNotFound):
        store.stat("k")


def test_open_object_store(tmp_path: Path, s3_server: MotoS3Server) -> None:
    local = open_object_store(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalObjectStore) and local.root == (tmp_path / "objects").resolve()
    s3 = open_object_store(
        Settings(
            data_dir=tmp_path, s3_endpoint=s3_server.endpoint, s3_access_key="a", s3_secret_key="b",
            s3_bucket="sharpeyes-x",
        )
    )
    assert isinstance(s3, S3ObjectStore) and s3.bucket == "sharpeyes-x"


def test_segment_key() -> None:
    # 2026-11-27 23:59:59.5 UTC: the hour is taken in UTC, not local time.
    start_us = 1795823999_500000
    assert segment_key("34020000001320000001", "main", start_us, 60000) == (
        f"34020000001320000001/main/2026/11/27/23/{start_us}-60000.mp4"
    )
    assert segment_key("cam-1", "sub", 0, 2000) == "cam-1/sub/1970/01/01/00/0-2000.mp4"
    with pytest.raises(ValueError):
        segment_key("../x", "main", 0, 1)
