"""Findings 2, 7, 9: every view is on the record once, and dead WHEP offers free their slots."""

from __future__ import annotations

import asyncio
import time

import httpx
from aiortc import RTCPeerConnection

from tests.security.conftest import CONNECT_TIMEOUT_S, MAX_VIEWS_PER_USER, SecurityWorld


def _recorded_range(world: SecurityWorld) -> tuple[int, int]:
    world.wait_segments("cam1", 2)
    segs = world.ctx.index.segments("cam1", "main")
    return segs[0].start_us // 1000 + 1, segs[-1].end_us // 1000 - 1


# -- finding 2: ranged clip downloads are audited, once per viewing ----------------------


def test_f02_a_ranged_clip_download_is_audited_once(world: SecurityWorld) -> None:
    start, end = _recorded_range(world)
    name = world.new_user("investigator")
    headers = world.headers(name)
    first = world.last_audit_id()
    url = f"{world.base}/api/cameras/cam1/clip.mp4?start={start}&end={end}"
    r = httpx.get(url, headers={**headers, "Range": "bytes=1-"}, timeout=60)
    assert r.status_code == 206, r.text[:200]
    assert len(r.content) > 1000
    rows = world.rows_since(first, user=name)
    assert [(x.action, x.camera_id) for x in rows] == [("playback", "cam1")]
    assert rows[0].client_ip == "127.0.0.1" and rows[0].range_start_us is not None
    # More ranges of the same clip are the same viewing: no more rows.
    r = httpx.get(url, headers={**headers, "Range": "bytes=100-2000"}, timeout=60)
    assert r.status_code == 206
    assert len(world.rows_since(first, user=name)) == 1


# -- finding 7: every LL-HLS viewer, latest.jpg and thumbnails are audited ---------------


def test_f07_each_hls_viewer_gets_a_row(world: SecurityWorld) -> None:
    a, b = world.new_user("viewer"), world.new_user("viewer")
    first = world.last_audit_id()
    for name in (a, b, a, b):
        r = httpx.get(f"{world.base}/api/cameras/cam1/live.m3u8", headers=world.headers(name), timeout=30)
        assert r.status_code == 200, r.text[:200]
    rows = [x for x in world.rows_since(first) if x.action == "live_start"]
    assert sorted(x.user for x in rows) == sorted([a, b])
    assert all(x.camera_id == "cam1" and "hls" in x.detail for x in rows)


def test_f07_latest_jpeg_and_thumbnails_are_audited_once_per_viewing(world: SecurityWorld) -> None:
    name = world.new_user("investigator")
    headers = world.headers(name)
    first = world.last_audit_id()
    deadline = time.monotonic() + 30
    while True:
        r = httpx.get(f"{world.base}/api/cameras/cam1/latest.jpg", headers=headers, timeout=10)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    httpx.get(f"{world.base}/api/cameras/cam1/latest.jpg", headers=headers, timeout=10)  # a wall polling
    now_ms = int(time.time() * 1000)
    thumbs: list = []  # type: ignore[type-arg]
    while not thumbs and time.monotonic() < deadline + 30:
        thumbs = httpx.get(f"{world.base}/api/cameras/cam1/thumbnails?start={now_ms - 600_000}&end={now_ms + 60_000}",
                           headers=headers, timeout=10).json()
        time.sleep(0.5)
    assert thumbs, "no thumbnails were made"
    for t in thumbs[:2]:
        assert httpx.get(world.base + t["url"], headers=headers, timeout=10).status_code == 200
    rows = world.rows_since(first, user=name)
    assert [(x.action, x.camera_id) for x in rows] == [("snapshot", "cam1"), ("snapshot", "cam1")]
    assert "latest.jpg" in rows[0].detail and rows[1].detail == "thumbnail"


# -- finding 9: dead WHEP offers -------------------------------------------------------------


async def _dead_offer(world: SecurityWorld, headers: dict[str, str]) -> tuple[int, RTCPeerConnection]:
    """POST a real offer and never answer ICE: the peer never connects."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=20) as client:
        r = await client.post(f"{world.base}/api/cameras/cam1/whep", content=pc.localDescription.sdp,
                              headers={**headers, "Content-Type": "application/sdp"})
    return r.status_code, pc


def test_f09_dead_offers_free_their_slots_and_one_user_is_capped(world: SecurityWorld) -> None:
    name = world.new_user("viewer")
    headers = world.headers(name)
    hub = world.supervisor.live.get("cam1", "main")
    assert hub is not None

    async def main() -> None:
        before = hub.viewer_count
        results = [await _dead_offer(world, headers) for _ in range(MAX_VIEWS_PER_USER + 1)]
        codes = [code for code, _ in results]
        assert codes == [201] * MAX_VIEWS_PER_USER + [429], codes
        assert hub.viewer_count == before + MAX_VIEWS_PER_USER
        # Never connected: ended after the connect timeout (plus a sweep), slots free again.
        deadline = time.monotonic() + CONNECT_TIMEOUT_S + 10
        while hub.viewer_count > before and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert hub.viewer_count == before
        assert not [v for v in world.ctx.live_sessions.views(name)]
        for _, pc in results:
            await pc.close()

    asyncio.run(main())
    stops = [x for x in world.audit.query(user=name, action="live_stop", limit=100)]
    assert len(stops) == MAX_VIEWS_PER_USER and all("not connected" in x.detail for x in stops)


def test_whep_session_is_ended_only_by_its_own_user_or_an_admin(world: SecurityWorld) -> None:
    """Beyond the list: a viewer who learns another's session URL cannot cut their video."""
    from tests.live.whep_client import close, wait_frames, whep_connect

    owner, other = world.new_user("viewer"), world.new_user("viewer")
    owner_h, other_h = world.headers(owner), world.headers(other)

    async def main() -> None:
        async with httpx.AsyncClient(timeout=20) as client:
            rx = await whep_connect(client, f"{world.base}/api/cameras/cam1/whep", owner_h)
            assert not isinstance(rx, httpx.Response), rx.text
            await wait_frames(rx, 3)
            assert (await client.delete(world.base + rx.location, headers=other_h)).status_code == 403
            assert (await client.delete(world.base + rx.location, headers=owner_h)).status_code == 200
            await close(rx)

    asyncio.run(main())
