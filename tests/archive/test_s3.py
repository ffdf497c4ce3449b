"""Clips from S3 (moto): the bytes fetched are the clip's, plus at most a GOP at each end."""

from __future__ import annotations

from typing import Iterator

import pytest

from storage.archive.clips import plan_clip
from storage.index.keyframes import unpack_keyframes
from storage.objects.store import ObjectInfo
from storage.objects.s3 import S3ObjectStore
from tests.archive.conftest import Archive, build_archive
from tests.archive.helpers import code_at, decode, presented
from tests.archive.recorded import T0
from tests.support.s3server import MotoS3Server


class CountingStore:
    """The real S3 store, counting what is read through it (requests and bytes)."""

    def __init__(self, inner: S3ObjectStore):
        self.inner = inner
        self.bytes_read = 0
        self.range_reads = 0
        self.stats = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def stat(self, key: str) -> ObjectInfo:
        self.stats += 1
        return self.inner.stat(key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return b"".join(self.iter_range(key, start, end))

    def iter_range(self, key: str, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        self.range_reads += 1
        for piece in self.inner.iter_range(key, start, end, chunk):
            self.bytes_read += len(piece)
            yield piece

    def reset(self) -> None:
        self.bytes_read = self.range_reads = self.stats = 0


@pytest.fixture(scope="module")
def s3_archive(
    s3_server: MotoS3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Archive, CountingStore]]:
    from minio import Minio

    bucket = s3_server.new_bucket_name()
    Minio(s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key,
          secure=False, region=s3_server.region).make_bucket(bucket)
    store = CountingStore(S3ObjectStore(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket,
                                        region=s3_server.region))
    a = build_archive(tmp_path_factory.mktemp("s3archive"), store=store)  # type: ignore[arg-type]
    with a.client:
        yield a, store
    a.index.engine.dispose()


def gop_bytes(a: Archive) -> int:
    """The largest GOP (fragment) recorded."""
    out = 0
    for row in a.index.segments("cam-1", "main"):
        kfs = unpack_keyframes(row.keyframes)
        ends = [k.byte_offset for k in kfs[1:]] + [row.bytes]
        out = max(out, max(e - k.byte_offset for k, e in zip(kfs, ends)))
    return out


def test_bytes_fetched_from_s3_are_bounded_by_the_clip(s3_archive: tuple[Archive, CountingStore]) -> None:
    a, store = s3_archive
    start, end = T0 + 2_500_000, T0 + 10_500_000
    store.reset()
    r = a.get(f"/api/cameras/cam-1/clip.mp4?start={start // 1000}&end={end // 1000}")
    assert r.status_code == 200, r.text
    clip_size = len(r.content)
    # The issue's bound, strictly: the fragments wholly inside [start, end) are "the
    # clip"; the GOPs cut by start and end are the allowance at each end.
    plan = plan_clip(a.index, "cam-1", "main", start, end)
    inside = sum(f.size for f in plan.fragments if f.start_us >= start and f.end_us <= end)
    assert store.bytes_read <= 1.05 * inside + 2 * gop_bytes(a)
    assert store.bytes_read < clip_size, "only fragments are read: no segment headers, no trailers beyond them"
    assert store.range_reads == 4, "the first GOP while planning, then one ranged GET per segment"
    assert store.stats == 3
    shown = presented(decode(r.content))
    assert abs(shown[0].code - code_at(start)) <= 1 and shown[-1].code == code_at(end - 1)


def test_range_request_reads_only_what_it_needs(s3_archive: tuple[Archive, CountingStore]) -> None:
    a, store = s3_archive
    url = f"/api/cameras/cam-1/clip.mp4?start={T0 // 1000}&end={(T0 + 20_000_000) // 1000}"
    full = a.get(url).content
    store.reset()
    r = a.get(url, headers={"Range": "bytes=300000-300999"})
    assert r.status_code == 206 and r.content == full[300000:301000]
    assert store.bytes_read <= 1000 + gop_bytes(a), "a byte range reads the GOP(s) it falls in, not the clip"
