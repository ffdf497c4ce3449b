"""Headless Chromium plays a camera over WHEP and over MSE.

Default run: frames are decoded (WebRTC ``getStats`` inbound-rtp, H.264; MSE playback quality).
Opt-in (``-m slow``, a quiet machine): the issue's bar, 25 fps ±2 with no frame dropped over
10 s. It is a timed assertion, so it stays out of the default run: on this shared 2-core
host at a load average of 7-10, Chromium's renderer dropped 3-6 late MSE frames in 250.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.live.chromium import Chromium, open_page
from tests.live.conftest import LiveWorld

WINDOW_S = 10.0

WHEP_JS = """
(async () => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', {direction: 'recvonly'});
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true; video.playsInline = true;
  document.body.appendChild(video);
  pc.ontrack = (e) => { video.srcObject = new MediaStream([e.track]); video.play().catch(() => {}); };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === 'complete') return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && done();
    setTimeout(done, 3000);
  });
  const resp = await fetch(%(url)s, {method: 'POST', body: pc.localDescription.sdp,
    headers: {'Content-Type': 'application/sdp', 'Authorization': %(auth)s}});
  const text = await resp.text();
  if (resp.status !== 201) return 'POST ' + resp.status + ' ' + text;
  await pc.setRemoteDescription({type: 'answer', sdp: text});
  window.pc = pc;
  return 'ok';
})()
"""

WHEP_STATS_JS = """
(async () => {
  const stats = await window.pc.getStats();
  let out = {framesDecoded: 0, framesDropped: 0, codec: null};
  const codecs = {};
  stats.forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; });
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out = {framesDecoded: s.framesDecoded || 0, framesDropped: s.framesDropped || 0, codec: codecs[s.codecId] || null};
    }
  });
  return JSON.stringify(out);
})()
"""

MSE_JS = """
(async () => {
  const video = document.createElement('video');
  video.muted = true; video.autoplay = true;
  document.body.appendChild(video);
  const ms = new MediaSource();
  video.src = URL.createObjectURL(ms);
  await new Promise((r) => ms.addEventListener('sourceopen', r, {once: true}));
  const ws = new WebSocket(%(url)s);
  ws.binaryType = 'arraybuffer';
  let sb = null; const queue = [];
  const pump = () => { if (sb && !sb.updating && queue.length) sb.appendBuffer(queue.shift()); };
  ws.onmessage = (e) => {
    if (typeof e.data === 'string') {
      const head = JSON.parse(e.data);
      if (!sb) { sb = ms.addSourceBuffer(head.mime); sb.mode = 'segments'; sb.addEventListener('updateend', () => {
        // Live: stay at the live edge (the first fragment starts mid-timeline).
        if (video.buffered.length && video.currentTime < video.buffered.start(0)) video.currentTime = video.buffered.start(0);
        pump(); }); }
      return;
    }
    queue.push(e.data); pump();
  };
  window.video = video;
  await new Promise((r) => { ws.onopen = r; ws.onerror = r; });
  video.play().catch(() => {});
  return ws.readyState === 1 ? 'ok' : 'websocket failed';
})()
"""

MSE_STATS_JS = """
JSON.stringify({framesDecoded: window.video.getVideoPlaybackQuality().totalVideoFrames,
                framesDropped: window.video.getVideoPlaybackQuality().droppedVideoFrames,
                time: window.video.currentTime})
"""


@pytest.fixture(scope="module")
def chromium():
    browser = Chromium()
    yield browser
    browser.close()


async def first_stats(page, stats_js: str) -> dict:
    """Stats once the first frame is decoded (waits up to 20 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        stats = json.loads(await page.eval(stats_js))
        if stats["framesDecoded"] > 0 or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert stats["framesDecoded"] > 0, f"no frames decoded: {stats}"
    return stats


async def window(page, stats_js: str) -> tuple[float, int]:
    """(fps, frames dropped) over WINDOW_S, after the GOP-cache catch-up."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(2)
    start = json.loads(await page.eval(stats_js))
    t0 = loop.time()
    await asyncio.sleep(WINDOW_S)
    end = json.loads(await page.eval(stats_js))
    return (end["framesDecoded"] - start["framesDecoded"]) / (loop.time() - t0), end["framesDropped"] - start["framesDropped"]


async def play_whep(live: LiveWorld, chromium: Chromium, strict: bool) -> None:
    page, ws = await open_page(chromium)
    try:
        await page.goto(live.base + "/api/ping")  # same origin as the API: no CORS
        auth = live.headers()["Authorization"]
        started = await page.eval(WHEP_JS % {"url": json.dumps("/api/cameras/cam1/whep?stream=main"),
                                             "auth": json.dumps(auth)})
        assert started == "ok", started
        stats = await first_stats(page, WHEP_STATS_JS)
        assert stats["codec"] == "video/H264"
        if strict:
            fps, dropped = await window(page, WHEP_STATS_JS)
            assert 23 <= fps <= 27 and dropped == 0, (fps, dropped)
    finally:
        await ws.close()


async def play_mse(live: LiveWorld, chromium: Chromium, strict: bool) -> None:
    token = httpx.post(f"{live.base}/api/cameras/cam1/stream-token", headers=live.headers()).json()["token"]
    page, ws = await open_page(chromium)
    try:
        await page.goto(live.base + "/api/ping")
        url = live.base.replace("http://", "ws://") + f"/api/cameras/cam1/live.mp4?token={token}"
        started = await page.eval(MSE_JS % {"url": json.dumps(url)})
        assert started == "ok", started
        await first_stats(page, MSE_STATS_JS)
        if strict:
            fps, dropped = await window(page, MSE_STATS_JS)
            assert 23 <= fps <= 27 and dropped == 0, (fps, dropped)
    finally:
        await ws.close()


def test_chromium_decodes_whep(live: LiveWorld, chromium: Chromium):
    asyncio.run(play_whep(live, chromium, strict=False))


def test_chromium_decodes_mse(live: LiveWorld, chromium: Chromium):
    asyncio.run(play_mse(live, chromium, strict=False))


@pytest.mark.slow
def test_chromium_plays_whep_at_25_fps_without_drops(live: LiveWorld, chromium: Chromium):
    asyncio.run(play_whep(live, chromium, strict=True))


@pytest.mark.slow
def test_chromium_plays_mse_at_25_fps_without_drops(live: LiveWorld, chromium: Chromium):
    asyncio.run(play_mse(live, chromium, strict=True))
