"""WHEP against the real app on uvicorn, fed by a real camera, received by aiortc."""

from __future__ import annotations

import asyncio

import httpx

from streams.live import webrtc_peer as live_webrtc
from tests.live.conftest import MAX_VIEWERS, LiveWorld
from tests.live.whep_client import close, wait_frames, whep_connect
from tests.support.clips import read_frame_code

OFFER_NO_H264 = """v=0\r
o=- 1 1 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
m=video 9 UDP/TLS/RTP/SAVPF 96\r
c=IN IP4 0.0.0.0\r
a=mid:0\r
a=recvonly\r
a=rtpmap:96 VP8/90000\r
"""


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_whep_plays_decoded_frames_and_delete_ends_the_session(live: LiveWorld):
    async def main() -> None:
        async with httpx.AsyncClient(base_url=live.base, timeout=10) as client:
            r = await whep_connect(client, "/api/cameras/cam1/whep?stream=main", live.headers())
            assert not isinstance(r, httpx.Response), r.text
            await wait_frames(r, 10)
            assert (r.frames[0].width, r.frames[0].height) == (640, 360)
            codes = [read_frame_code(f.to_ndarray(format="rgb24")) for f in r.frames[:10]]
            assert all(c is not None for c in codes)
            assert live.hub("cam1").viewer_count == 1
            assert len(live_webrtc._payloads) > 0  # packetised once per access unit, shared
            resp = await client.delete(r.location, headers=live.headers())
            assert resp.status_code == 200
            assert live.hub("cam1").viewer_count == 0
            assert (await client.delete(r.location, headers=live.headers())).status_code == 410
            await close(r)
        actions = [e.action for e in live.audit.query(camera_id="cam1", limit=10)]
        assert "live_start" in actions and "live_stop" in actions

    run(main())


def test_whep_sub_stream(live: LiveWorld):
    live.wait_online("cam1", "sub")

    async def main() -> None:
        async with httpx.AsyncClient(base_url=live.base, timeout=10) as client:
            r = await whep_connect(client, "/api/cameras/cam1/whep?stream=sub", live.headers())
            assert not isinstance(r, httpx.Response), r.text
            await wait_frames(r, 3)
            assert (r.frames[0].width, r.frames[0].height) == (320, 180)
            await client.delete(r.location, headers=live.headers())
            await close(r)

    run(main())


def post_offer(live: LiveWorld, camera: str, body: str, ctype: str = "application/sdp") -> httpx.Response:
    return httpx.post(f"{live.base}/api/cameras/{camera}/whep", content=body,
                      headers={**live.headers(), "Content-Type": ctype}, timeout=10)


def test_bad_offers_are_400_with_the_reason(live: LiveWorld):
    r = post_offer(live, "cam1", "hello")
    assert r.status_code == 400 and "malformed" in r.json()["detail"]
    r = post_offer(live, "cam1", OFFER_NO_H264)
    assert r.status_code == 400 and "H.264" in r.json()["detail"]
    # Looks like SDP, offers H.264, but aiortc cannot answer it (no ICE/DTLS attributes).
    r = post_offer(live, "cam1", OFFER_NO_H264.replace("VP8", "H264"))
    assert r.status_code == 400 and "cannot be answered" in r.json()["detail"]
    assert live.hub("cam1").viewer_count == 0  # a refused offer is not counted as a viewer


def test_unknown_offline_h265_and_out_of_scope_cameras(live: LiveWorld):
    offer = OFFER_NO_H264.replace("VP8", "H264")
    assert post_offer(live, "nope", offer).status_code == 404
    r = post_offer(live, "dead", offer)
    assert r.status_code == 503
    detail = r.json()["detail"]
    assert detail["state"] in ("offline", "connecting") and detail["camera_id"] == "dead"
    live.wait_online("cam265")
    r = post_offer(live, "cam265", offer)
    assert r.status_code == 409 and "live-h264" in r.json()["detail"]
    token = live.state.tokens.issue("access", "townviewer")[0]
    r = httpx.post(f"{live.base}/api/cameras/cam1/whep", content=offer,
                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"})
    assert r.status_code == 404  # out of scope answers like unknown


def test_ten_viewers_cost_the_camera_one_pull_and_the_next_one_gets_429(live: LiveWorld):
    live.wait_online("cam1", "sub")

    async def main() -> None:
        async with httpx.AsyncClient(base_url=live.base, timeout=20) as client:
            receivers = await asyncio.gather(*(
                whep_connect(client, "/api/cameras/cam1/whep?stream=sub", live.headers(), keep=3)
                for _ in range(MAX_VIEWERS)))
            try:
                assert all(not isinstance(r, httpx.Response) for r in receivers)
                await asyncio.gather(*(wait_frames(r, 3, timeout=40) for r in receivers))
                assert live.hub("cam1", "sub").viewer_count == MAX_VIEWERS
                assert live.cameras.client_count("/cam1sub") == 1  # one pull, however many watch
                refused = await whep_connect(client, "/api/cameras/cam1/whep?stream=sub", live.headers())
                assert isinstance(refused, httpx.Response) and refused.status_code == 429
                assert "live_max_viewers" in refused.json()["detail"] and refused.headers["retry-after"]
            finally:
                for r in receivers:
                    if not isinstance(r, httpx.Response):
                        await client.delete(r.location, headers=live.headers())
                        await close(r)
        assert live.hub("cam1", "sub").viewer_count == 0

    run(main())


def test_shared_payloads_are_rfc6184_and_fit_the_webrtc_mtu():
    from ingest.access_unit import AccessUnit
    from storage.mp4.nal import split_annexb
    from tests.support.packets import encode

    enc = encode(seconds=0.2, size=(640, 360))
    for p in enc.video_packets:
        au = AccessUnit(tuple(split_annexb(bytes(p))), p.pts, p.is_keyframe)
        payloads = live_webrtc.webrtc_payloads(au)
        assert payloads is live_webrtc.webrtc_payloads(au)  # computed once
        assert all(len(x) <= live_webrtc.WEBRTC_MAX_PAYLOAD for x in payloads)
        nals, fu = [], b""
        for x in payloads:  # depacketise: single NAL units and FU-A
            if x[0] & 0x1F == 28:
                if x[1] & 0x80:
                    fu = bytes([(x[0] & 0xE0) | (x[1] & 0x1F)])
                fu += x[2:]
                if x[1] & 0x40:
                    nals.append(fu)
            else:
                nals.append(x)
        assert nals == [n for n in au.nals if n[0] & 0x1F != 9]
