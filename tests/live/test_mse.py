"""fMP4 over a real WebSocket: the bytes parse as fMP4 and PyAV decodes them."""

from __future__ import annotations

import asyncio
import io
import json

import av
import httpx
import pytest
import websockets

from storage.mp4.read import init_segment_size, parse_init, scan_fragments
from tests.live.conftest import LiveWorld
from tests.support.clips import read_frame_code


def stream_token(live: LiveWorld, camera: str) -> str:
    r = httpx.post(f"{live.base}/api/cameras/{camera}/stream-token", headers=live.headers(), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def ws_url(live: LiveWorld, camera: str, query: str) -> str:
    return live.base.replace("http://", "ws://") + f"/api/cameras/{camera}/live.mp4?{query}"


async def receive(url: str, fragments: int) -> tuple[dict, bytes, list[bytes]]:
    async with websockets.connect(url) as ws:
        head = json.loads(await ws.recv())
        init = await ws.recv()
        frags = [await ws.recv() for _ in range(fragments)]
    return head, init, frags


def test_mse_sends_init_then_fragments_that_decode(live: LiveWorld):
    token = stream_token(live, "cam1")
    head, init, frags = asyncio.run(receive(ws_url(live, "cam1", f"stream=main&token={token}"), 30))
    assert head["type"] == "init" and head["mime"].startswith('video/mp4; codecs="avc1.')
    assert (head["width"], head["height"]) == (640, 360)
    data = init + b"".join(frags)
    isz = init_segment_size(data)
    assert isz == len(init)
    tracks = parse_init(init)
    assert len(scan_fragments(data, tracks, isz)) == 30  # one fragment per frame
    with av.open(io.BytesIO(data), format="mp4") as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 30
    codes = [read_frame_code(f.to_ndarray(format="rgb24")) for f in frames]
    assert all(c is not None for c in codes)
    assert all(b == a + 1 for a, b in zip(codes, codes[1:]))  # consecutive frames, from a keyframe
    assert live.hub("cam1").viewer_count == 0  # counted out when the socket closed


def test_ten_mse_viewers_share_one_muxer(live: LiveWorld):
    token = stream_token(live, "cam1")
    url = ws_url(live, "cam1", f"stream=main&token={token}")

    async def main() -> None:
        results = await asyncio.gather(*(receive(url, 5) for _ in range(10)))
        for _head, init, frags in results:
            assert init == results[0][1]  # the same init bytes for everyone: muxed once
            with av.open(io.BytesIO(init + b"".join(frags)), format="mp4") as c:
                assert len(list(c.decode(video=0))) == 5

    asyncio.run(main())
    assert live.cameras.client_count("/cam1") == 1


def refusal(url: str) -> tuple[int, dict]:
    async def main() -> tuple[int, dict]:
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with websockets.connect(url):
                pass
        response = info.value.response
        return response.status_code, json.loads(response.body or b"{}")

    return asyncio.run(main())


def test_mse_needs_a_stream_token_for_that_camera(live: LiveWorld):
    assert refusal(ws_url(live, "cam1", "stream=main"))[0] == 401
    status, body = refusal(ws_url(live, "cam1", "stream=main&token=bogus"))
    assert status == 401 and "stream-token" in body["detail"]
    status, body = refusal(ws_url(live, "cam1", f"token={stream_token(live, 'cam265')}"))
    assert status == 401 and "another camera" in body["detail"]


def test_mse_refuses_offline_and_h265_cameras_with_the_reason(live: LiveWorld):
    status, body = refusal(ws_url(live, "dead", f"token={stream_token(live, 'dead')}"))
    assert status == 503 and body["detail"]["camera_id"] == "dead" and body["detail"]["state"]
    live.wait_online("cam265")
    status, body = refusal(ws_url(live, "cam265", f"token={stream_token(live, 'cam265')}"))
    assert status == 409 and "live-h264" in body["detail"]
