"""Storage that does not match the index: missing, altered or truncated objects, and
encoding changes. The clip fails naming the segment, or skips it with allow_gaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from storage.archive.clips import EncodingChanged, SegmentCorrupt, SegmentMissing, plan_clip
from tests.archive.conftest import Archive, build_archive
from tests.archive.helpers import decode, presented
from tests.archive.recorded import T0, record


@pytest.fixture
def damaged(tmp_path: Path) -> Iterator[Archive]:
    a = build_archive(tmp_path)
    with a.client:
        yield a
    a.index.engine.dispose()


def segment_at(a: Archive, offset_s: int):  # type: ignore[no-untyped-def]
    return next(r for r in a.index.segments("cam-1", "main") if r.start_us == T0 + offset_s * 1_000_000)


def object_path(a: Archive, key: str) -> Path:
    return a.data_dir / "objects" / key


def test_missing_object_fails_naming_it_or_is_skipped_with_allow_gaps(damaged: Archive) -> None:
    seg = segment_at(damaged, 4)
    damaged.store.delete(seg.object_key)
    url = f"/api/cameras/cam-1/clip.mp4?start={(T0 + 2_000_000) // 1000}&end={(T0 + 10_000_000) // 1000}"
    r = damaged.get(url)
    assert r.status_code == 409
    assert seg.object_key in r.json()["detail"] and "allow_gaps=true" in r.json()["detail"]
    r = damaged.get(url + "&allow_gaps=true")
    assert r.status_code == 200
    gaps = json.loads(r.headers["x-sharpeyes-gaps"])
    assert gaps == [
        {"start": "2025-06-15T08:00:04.000Z", "end": "2025-06-15T08:00:08.000Z", "reason": "storage_missing"}
    ]
    codes = [f.code for f in presented(decode(r.content))]
    assert codes[0] == 50 and codes[-1] == 249 and not set(range(100, 200)) & set(codes)


def test_an_altered_byte_stops_the_clip_naming_the_segment(damaged: Archive) -> None:
    seg = segment_at(damaged, 4)
    path = object_path(damaged, seg.object_key)
    data = bytearray(path.read_bytes())
    data[-5000] ^= 0x01  # inside the last GOP's picture data: same size, same structure
    path.write_bytes(bytes(data))  # the sidecar's recorded sha256 is left as it was
    plan = plan_clip(damaged.index, "cam-1", "main", T0 + 3_000_000, T0 + 9_000_000, store=damaged.store)
    with pytest.raises(SegmentCorrupt, match=seg.object_key.replace(".", r"\.")):
        b"".join(plan.iter_bytes(damaged.store))


def test_a_fragment_that_is_not_a_fragment_is_refused(damaged: Archive) -> None:
    seg = segment_at(damaged, 8)
    path = object_path(damaged, seg.object_key)
    data = bytearray(path.read_bytes())
    from storage.index.keyframes import unpack_keyframes
    off = unpack_keyframes(seg.keyframes)[1].byte_offset
    data[off + 4:off + 8] = b"junk"  # the second GOP's moof header
    path.write_bytes(bytes(data))
    with pytest.raises(SegmentCorrupt, match="not a moof"):  # the clip's first GOP: found while planning
        plan_clip(damaged.index, "cam-1", "main", T0 + 9_100_000, T0 + 9_500_000, store=damaged.store)
    plan = plan_clip(damaged.index, "cam-1", "main", T0 + 8_100_000, T0 + 9_500_000, store=damaged.store)
    with pytest.raises(SegmentCorrupt, match="not a moof"):  # a later GOP: found while streaming
        b"".join(plan.iter_bytes(damaged.store))
    r = damaged.get(f"/api/cameras/cam-1/clip.mp4?start={(T0 + 9_100_000) // 1000}&end={(T0 + 9_500_000) // 1000}")
    assert r.status_code == 409 and seg.object_key in r.json()["detail"]


def test_a_truncated_object_is_refused_before_streaming(damaged: Archive) -> None:
    seg = segment_at(damaged, 16)
    path = object_path(damaged, seg.object_key)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SegmentMissing, match=seg.object_key.replace(".", r"\.")):
        plan_clip(damaged.index, "cam-1", "main", T0 + 17_000_000, T0 + 18_000_000, store=damaged.store)


def test_an_encoding_change_is_refused_with_where_to_split(damaged: Archive) -> None:
    later = T0 + 30_000_000
    record(damaged.index, damaged.store, damaged.data_dir / "spool2", t0=later, runs=[(0, 100)], size=(320, 180))
    url = f"/api/cameras/cam-1/clip.mp4?start={(T0 + 20_000_000) // 1000}&end={(later + 2_000_000) // 1000}"
    r = damaged.get(url)
    assert r.status_code == 409
    assert "2025-06-15T08:00:30.000Z" in r.json()["detail"] and "separately" in r.json()["detail"]
    with pytest.raises(EncodingChanged):
        plan_clip(damaged.index, "cam-1", "main", T0, later + 1_000_000)
    r = damaged.get(f"/api/cameras/cam-1/clip.mp4?start={later // 1000}&end={(later + 2_000_000) // 1000}")
    assert r.status_code == 200
    assert [f.code for f in presented(decode(r.content))][:2] == [0, 1]
