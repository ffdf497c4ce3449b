"""LL-HLS: the playlist lists parts of at most 0.5 s, ffprobe and PyAV read the stream."""

from __future__ import annotations

import json
import re
import subprocess

import av
import httpx

from tests.live.conftest import LiveWorld


def token(live: LiveWorld, camera: str = "cam1") -> str:
    return httpx.post(f"{live.base}/api/cameras/{camera}/stream-token", headers=live.headers(), timeout=10).json()["token"]


def test_ll_hls_playlist_parts_and_blocking_reload(live: LiveWorld):
    t = token(live)
    url = f"{live.base}/api/cameras/cam1/live.m3u8?stream=main&token={t}"
    first = httpx.get(url, timeout=20)
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    text = first.text
    assert "#EXT-X-PART-INF:PART-TARGET=0.500" in text and "CAN-BLOCK-RELOAD=YES" in text
    parts = re.findall(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"', text)
    assert parts and all(float(d) <= 0.5 for d, _ in parts)
    assert all(f"token={t}" in uri for _, uri in parts)
    # A blocking reload for the next part returns once it exists.
    last_msn, last_part = map(int, re.search(r"live/(\d+)\.(\d+)\.m4s", parts[-1][1]).groups())
    nxt = httpx.get(url + f"&_HLS_msn={last_msn}&_HLS_part={last_part + 1}", timeout=20)
    assert nxt.status_code == 200
    assert f"live/{last_msn}.{last_part + 1}.m4s" in nxt.text or f"live/{last_msn + 1}.0.m4s" in nxt.text
    # Media needs the token too, and unknown names are refused clearly.
    init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)
    assert httpx.get(f"{live.base}/api/cameras/cam1/{init}", timeout=10).status_code == 200
    assert httpx.get(f"{live.base}/api/cameras/cam1/{init.split('?')[0]}", timeout=10).status_code == 401
    assert httpx.get(f"{live.base}/api/cameras/cam1/live/x.m4s?token={t}", timeout=10).status_code == 400


def test_ffprobe_and_pyav_read_the_ll_hls_url(live: LiveWorld):
    url = f"{live.base}/api/cameras/cam1/live.m3u8?token={token(live)}"
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["streams"], out.stderr[-3000:]
    stream = json.loads(out.stdout)["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 640, 360)
    with av.open(url, timeout=20) as c:
        frames = []
        for frame in c.decode(video=0):
            frames.append(frame)
            if len(frames) == 25:
                break
    assert len(frames) == 25


def test_ll_hls_refuses_offline_and_h265_cameras(live: LiveWorld):
    r = httpx.get(f"{live.base}/api/cameras/dead/live.m3u8?token={token(live, 'dead')}", timeout=10)
    assert r.status_code == 503 and r.json()["detail"]["state"]
    live.wait_online("cam265")
    r = httpx.get(f"{live.base}/api/cameras/cam265/live.m3u8?token={token(live, 'cam265')}", timeout=10)
    assert r.status_code == 409
