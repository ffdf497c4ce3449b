"""Live view of a camera that sends B-frames (VLC's RTSP server, tests.support.vlc_camera).

MSE and LL-HLS carry the B-frames as they are (Chromium plays MSE; the LL-HLS media
decodes in order); the RTSP restream sends decode order with PTS timestamps; WHEP answers
409 with the reason unless the camera's ``live-h264`` profile re-encodes it without
B-frames, and then Chromium plays it. The status and the stream index say "B-frames".
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Iterator

import av
import httpx
import pytest
from argon2 import PasswordHasher

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.media.pipelines import MediaPipelines
from ingest.supervisor import Supervisor
from storage.db.engine import open_engine
from storage.index.credentials import load_cipher
from storage.index.media import MediaIndex
from storage.index.registry import Registry
from storage.index.segments import SegmentIndex
from storage.objects.open import open_object_store
from streams.access.audit import AuditLog
from streams.access.guard import AuthState
from streams.access.tokens import TokenSigner
from streams.access.users import UserStore
from streams.app import create_app
from streams.context import AppContext
from streams.live.restream import install_restream
from tests.live.chromium import Chromium, open_page
from tests.live.conftest import PASSWORD, LiveWorld
from tests.live.test_browser import MSE_JS, MSE_STATS_JS, WHEP_JS, WHEP_STATS_JS, first_stats
from tests.live.whep_client import whep_connect
from tests.support.cameras import free_port
from tests.support.clips import read_frame_code
from tests.support.http import UvicornThread
from tests.support.frames import continuity, presented_codes


@pytest.fixture(scope="module")
def bf_world(vlc_camera, tmp_path_factory) -> Iterator[LiveWorld]:
    """One B-frame camera registered twice: ``bf`` as it is, ``bf264`` with live-h264."""
    cam = vlc_camera(label="bflive", name="bflive")
    tmp: Path = tmp_path_factory.mktemp("bframes-live")
    rtsp_port = free_port()
    settings = Settings(data_dir=tmp, webrtc_host_addresses=["127.0.0.1"], rtsp_bind=f"127.0.0.1:{rtsp_port}",
                        connect_timeout_seconds=5, stall_timeout_seconds=5, segment_target_seconds=10,
                        worker_id="worker-bf", snapshots=False, motion=False)
    engine = open_engine(settings.database_url)
    cipher = load_cipher(tmp)
    registry = Registry(engine, cipher)
    registry.add_region(Region(code="county", name="County"))
    registry.add_camera(Camera(id="bf", name="B-frames", region="county", main_url=cam.url, rtsp_transport="udp"))
    registry.add_camera(Camera(id="bf264", name="B-frames, live-h264", region="county", main_url=cam.url,
                               rtsp_transport="udp", transcode="live-h264"))
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("viewer", PASSWORD, "viewer", ["*"])
    audit = AuditLog(engine)
    state = AuthState(users=users, audit=audit, tokens=TokenSigner(cipher.derive("sharpeyes token signing v1")))
    index = SegmentIndex(engine)
    store = open_object_store(settings)
    pipelines = MediaPipelines(settings, MediaIndex(engine), clock=lambda: time.time_ns() // 1000)
    supervisor = Supervisor(settings, registry, index, store, attach=pipelines.attach)
    app = create_app(AppContext(settings=settings, index=index, registry=registry, store=store,
                                supervisor=supervisor, auth=state))
    install_restream(app, supervisor.live, settings.rtsp_bind)
    port = free_port()
    server = UvicornThread(app, port).start()
    supervisor.start()
    world = LiveWorld(f"http://127.0.0.1:{port}", rtsp_port, supervisor, cam, state, audit, registry)
    try:
        world.wait_online("bf")
        world.wait_online("bf264")
        deadline = time.monotonic() + 20
        while not world.hub("bf").b_frames and time.monotonic() < deadline:
            time.sleep(0.1)
        yield world
    finally:
        server.stop()
        supervisor.close()
        engine.dispose()


@pytest.fixture(scope="module")
def chromium():
    browser = Chromium()
    yield browser
    browser.close()


def test_status_and_stream_index_say_b_frames(bf_world: LiveWorld) -> None:
    session = bf_world.supervisor.session("bf", "main")
    assert session is not None and session.status.b_frames and session.status.reorder_depth == 2
    streams = httpx.get(bf_world.base + "/api/streams", headers=bf_world.headers(), timeout=10).json()
    flags = {s["camera_id"]: s["b_frames"] for s in streams}
    assert flags == {"bf": True, "bf264": False}, "bf264's hub is fed by the re-encode, without B-frames"


def test_whep_refuses_b_frames_without_the_profile(bf_world: LiveWorld) -> None:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await whep_connect(client, bf_world.base + "/api/cameras/bf/whep", bf_world.headers())
        assert isinstance(resp, httpx.Response)
        return resp
    resp = asyncio.run(go())
    assert resp.status_code == 409
    detail = resp.json()["detail"]
    assert "B-frames" in detail and "live-h264" in detail


async def _play(world: LiveWorld, chromium: Chromium, js: str, stats_js: str) -> dict:
    page, ws = await open_page(chromium)
    try:
        await page.goto(world.base + "/api/ping")
        started = await page.eval(js)
        assert started == "ok", started
        stats = await first_stats(page, stats_js)
        await asyncio.sleep(2)
        later = json.loads(await page.eval(stats_js))
        assert later["framesDecoded"] > stats["framesDecoded"], "playback goes on"
        return later
    finally:
        await ws.close()


def test_chromium_plays_whep_through_live_h264(bf_world: LiveWorld, chromium: Chromium) -> None:
    auth = bf_world.headers()["Authorization"]
    js = WHEP_JS % {"url": json.dumps("/api/cameras/bf264/whep?stream=main"), "auth": json.dumps(auth)}
    stats = asyncio.run(_play(bf_world, chromium, js, WHEP_STATS_JS))
    assert stats["codec"] == "video/H264"


def test_chromium_plays_the_b_frames_over_mse(bf_world: LiveWorld, chromium: Chromium) -> None:
    token = httpx.post(f"{bf_world.base}/api/cameras/bf/stream-token", headers=bf_world.headers()).json()["token"]
    url = bf_world.base.replace("http://", "ws://") + f"/api/cameras/bf/live.mp4?token={token}"
    stats = asyncio.run(_play(bf_world, chromium, MSE_JS % {"url": json.dumps(url)}, MSE_STATS_JS))
    assert stats["time"] > 0


def test_ll_hls_media_decodes_in_presentation_order(bf_world: LiveWorld) -> None:
    token = httpx.post(f"{bf_world.base}/api/cameras/bf/stream-token", headers=bf_world.headers()).json()["token"]
    base = f"{bf_world.base}/api/cameras/bf/"
    playlist = httpx.get(base + f"live.m3u8?token={token}", timeout=20).text
    init_uri = next(line.split('"')[1] for line in playlist.splitlines() if line.startswith("#EXT-X-MAP"))
    segments = [line for line in playlist.splitlines() if line.startswith("live/") and "." in line]
    init = httpx.get(base + init_uri, timeout=10).content
    media = init + b"".join(httpx.get(base + s, timeout=10).content for s in segments[:2])
    codes = presented_codes(media)
    clip = bf_world.cameras.clip  # type: ignore[attr-defined]
    assert len(codes) >= 40 and continuity([codes], clip.frames).out_of_order == 0


def test_rtsp_restream_sends_decode_order_with_pts(bf_world: LiveWorld) -> None:
    token = bf_world.state.tokens.issue("stream", "viewer", camera_id="bf")[0]
    url = f"rtsp://127.0.0.1:{bf_world.rtsp_port}/bf?token={token}"
    ptss: list[int] = []
    frames: list[av.VideoFrame] = []
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=10) as c:
        for packet in c.demux(video=0):
            if packet.pts is not None:
                ptss.append(packet.pts)
            frames.extend(packet.decode())
            if len(frames) >= 60:
                break
    assert sum(1 for a, b in zip(ptss, ptss[1:]) if b < a) > 10, "B-frames: pts back and forth in decode order"
    codes = [read_frame_code(f.to_ndarray(format="gray")) for f in frames]
    clip = bf_world.cameras.clip  # type: ignore[attr-defined]
    assert continuity([codes], clip.frames).out_of_order == 0, codes
