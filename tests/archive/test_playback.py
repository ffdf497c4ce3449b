"""HLS VOD over a real HTTP server, snapshots, bad input and audit of clip/vod/snapshot."""

from __future__ import annotations

import json
import subprocess

import av
import cv2
import numpy as np
import pytest

from tests.archive.conftest import GAP, Archive
from tests.archive.helpers import code_at
from tests.archive.recorded import T0
from tests.archive.server import serve
from tests.support.clips import read_frame_code


def ms(t: int) -> int:
    return t // 1000


def stream_token(archive: Archive, cam: str = "cam-1") -> str:
    r = archive.client.post(f"/api/cameras/{cam}/stream-token", headers=archive.headers())
    assert r.status_code == 200, r.text
    return r.json()["token"]


def test_vod_playlist_is_byte_ranges_of_the_clip(archive: Archive) -> None:
    start, end = T0 + 10_500_000, T0 + 17_500_000
    r = archive.get(f"/api/cameras/cam-1/vod.m3u8?start={ms(start)}&end={ms(end)}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    lines = r.text.splitlines()
    assert lines[:2] == ["#EXTM3U", "#EXT-X-VERSION:7"] and lines[-1] == "#EXT-X-ENDLIST"
    assert "#EXT-X-DISCONTINUITY" in lines, "the gap 12-16 s is a discontinuity"
    clip_uri = lines[5].split('URI="')[1].split('"')[0]
    clip = archive.get(f"/api/cameras/cam-1/{clip_uri}").content
    header_len = int(lines[5].split('BYTERANGE="')[1].split("@")[0])
    pieces = [clip[:header_len]]
    total = 0.0
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-BYTERANGE:"):
            n, off = map(int, line.split(":")[1].split("@"))
            assert lines[i + 1] == clip_uri
            pieces.append(clip[off:off + n])
        if line.startswith("#EXTINF:"):
            total += float(line.split(":")[1].rstrip(","))
    assert b"".join(pieces) == clip, "header + byte ranges tile the clip exactly"
    assert total == pytest.approx((end - start - (GAP[1] - GAP[0])) / 1e6, abs=0.05)


def test_vod_plays_over_http_in_ffmpeg_with_a_stream_token(archive: Archive) -> None:
    start, end = T0 + 2_000_000, T0 + 7_000_000
    token = stream_token(archive)
    with serve(archive.client.app) as base:
        url = f"{base}/api/cameras/cam-1/vod.m3u8?start={ms(start)}&end={ms(end)}&token={token}"
        with av.open(url, options={"allowed_extensions": "ALL"}) as c:
            codes = [read_frame_code(f.to_ndarray(format="gray")) for f in c.decode(video=0)]
        probe = subprocess.run(["ffprobe", "-v", "error", "-allowed_extensions", "ALL", "-show_entries",
                                "stream=codec_name,width", "-of", "json", url],
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr
        assert json.loads(probe.stdout)["streams"][0] == {"codec_name": "h264", "width": 640}
        no_token = av.open  # without the token the player is refused
        with pytest.raises(av.error.HTTPUnauthorizedError):
            no_token(f"{base}/api/cameras/cam-1/vod.m3u8?start={ms(start)}&end={ms(end)}")
    assert codes[0] == code_at(start) and codes[-1] == code_at(end - 1)
    assert codes == list(range(codes[0], codes[-1] + 1))


def test_snapshot_is_the_frame_on_screen_and_scales(archive: Archive) -> None:
    at = T0 + 6_530_000
    r = archive.get(f"/api/cameras/cam-1/snapshot.jpg?at={ms(at)}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert img.shape == (360, 640)
    assert read_frame_code(img) == code_at(at)
    assert r.headers["x-sharpeyes-frame-time"] == "2025-06-15T08:00:06.520Z"
    small = archive.get("/api/cameras/cam-1/snapshot.jpg?at=2025-06-15T16:00:06.530%2B08:00&width=320")
    assert small.status_code == 200
    img = cv2.imdecode(np.frombuffer(small.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (180, 320, 3)
    large = archive.get(f"/api/cameras/cam-1/snapshot.jpg?at={ms(at)}&width=1280")
    img = cv2.imdecode(np.frombuffer(large.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (360, 640, 3), "never upscaled: a width over the frame's keeps the frame's"


def test_snapshot_bad_input(archive: Archive) -> None:
    assert archive.get("/api/cameras/cam-1/snapshot.jpg?at=2025-06-15T08:00:06").status_code == 422
    assert archive.get(f"/api/cameras/cam-1/snapshot.jpg?at={ms(T0)}&width=3").status_code == 422
    r = archive.get(f"/api/cameras/cam-1/snapshot.jpg?at={ms(GAP[0] + 1_000_000)}")
    assert r.status_code == 404 and r.json()["detail"]["gaps"][0]["reason"] == "offline"
    assert archive.get(f"/api/cameras/nope/snapshot.jpg?at={ms(T0)}").status_code == 404


def clip(archive: Archive, start: str, end: str, cam: str = "cam-1", name: str = "inv"):  # type: ignore[no-untyped-def]
    return archive.get(f"/api/cameras/{cam}/clip.mp4?start={start}&end={end}", name=name)


def test_clip_bad_input(archive: Archive) -> None:
    t = ms(T0)
    r = clip(archive, str(t + 5000), str(t + 1000))
    assert r.status_code == 422 and "must be before end" in r.json()["detail"]
    r = clip(archive, str(t), str(t))
    assert r.status_code == 422
    r = clip(archive, str(t), str(t + 86_400_001))
    assert r.status_code == 422 and "clip_max_seconds" in r.json()["detail"] and "/api/exports" in r.json()["detail"]
    r = clip(archive, "2025-06-15T08:00:00", str(t + 1000))
    assert r.status_code == 422 and "no time zone" in r.json()["detail"]
    r = clip(archive, "soon", str(t + 1000))
    assert r.status_code == 422 and "epoch milliseconds" in r.json()["detail"]
    unknown = clip(archive, str(t), str(t + 1000), cam="nope")
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    assert clip(archive, str(t), str(t + 1000), name="far").status_code == 404
    assert clip(archive, str(t), str(t + 1000), name="view").status_code == 403
    r = clip(archive, str(ms(GAP[0]) + 500), str(ms(GAP[1]) - 500))
    assert r.status_code == 404
    detail = r.json()["detail"]
    assert "no main recordings" in detail["message"]
    assert [(g["reason"], g["detail"]) for g in detail["gaps"]] == [("offline", "no answer on 10.0.0.5:554")]
    r = clip(archive, str(t), str(t + 1000), cam="cam-2")
    assert r.status_code == 404 and r.json()["detail"]["gaps"][0]["reason"] == "unknown"
    r = archive.get(f"/api/cameras/cam-1/vod.m3u8?start={t}&end={t + 86_400_001}")
    assert r.status_code == 422


def test_clip_vod_and_snapshot_are_audited(archive: Archive) -> None:
    before = len(archive.audit.query(limit=100_000))
    t = ms(T0)
    clip(archive, str(t + 1000), str(t + 2000))
    archive.get(f"/api/cameras/cam-1/clip.mp4?start={t + 1000}&end={t + 2000}", headers={"Range": "bytes=100-"})
    archive.get(f"/api/cameras/cam-1/vod.m3u8?start={t + 1000}&end={t + 2000}")
    archive.get(f"/api/cameras/cam-1/snapshot.jpg?at={t + 1000}")
    rows = archive.audit.query(limit=100_000)  # newest first
    assert len(rows) - before == 3, "a ranged re-fetch of the same clip is not a new viewing"
    new = rows[:3]
    assert sorted(r.action for r in new) == ["playback", "playback", "snapshot"]
    assert all(r.user == "inv" and r.camera_id == "cam-1" for r in new)
    assert {(r.range_start_us, r.range_end_us) for r in new if r.action == "playback"} == {
        (T0 + 1_000_000, T0 + 2_000_000)
    }
