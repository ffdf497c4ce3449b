"""The native RTSP client against GStreamer's RTSP server: TCP and UDP, Basic and Digest, keep-alive,
timestamp wrap, AAC, multi-slice cameras, and refusals with the reason."""

from __future__ import annotations

import asyncio
from typing import Any

import av
import pytest

from ingest.access_unit import AccessUnit
from ingest.rtp.audio import AudioFrame
from ingest.rtp.rtsp_client import RtspClient, RtspError
from tests.support.cameras import Mount

SIZE = (640, 360)


def pull(url: str, seconds: float, **kw: Any) -> tuple[RtspClient, list[AccessUnit], list[AudioFrame]]:
    units: list[AccessUnit] = []
    audio: list[AudioFrame] = []

    async def main() -> RtspClient:
        client = RtspClient(url, on_video=units.append, on_audio=audio.append, camera_id="t", **kw)
        task = asyncio.ensure_future(client.run())
        await asyncio.sleep(seconds)
        client.stop()
        await asyncio.wait_for(task, 10)
        return client

    return asyncio.run(main()), units, audio


def decoded_frames(codec: str, units: list[AccessUnit]) -> int:
    ctx: Any = av.CodecContext.create({"h265": "hevc"}.get(codec, codec), "r")
    n = sum(len(ctx.decode(av.Packet(b"".join(b"\0\0\0\1" + x for x in au.nals)))) for au in units)
    return n + len(ctx.decode(None))


@pytest.fixture(scope="module")
def cams(camera_server):  # type: ignore[no-untyped-def]
    return camera_server({
        "/h264": Mount("h264", size=SIZE, label="n1"),
        "/h265": Mount("h265", size=SIZE, label="n2"),
        "/slices": Mount("h264_slices", size=SIZE, label="n3"),
        "/aac": Mount("h264_aac", size=SIZE, label="n4"),
        "/basic": Mount("h264", size=SIZE, label="n5", user="admin", password="pw"),
        # 2**32 - 2 s of 90 kHz ticks past the start: the timestamp wraps two seconds in.
        "/wrap": Mount("h264", size=SIZE, label="n6", pay_options="timestamp-offset=4294787296 seqnum-offset=65400"),
    })


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("path, codec", [("/h264", "h264"), ("/h265", "h265")])
def test_records_every_frame_in_order_and_tears_down(cams, transport: str, path: str, codec: str) -> None:  # type: ignore[no-untyped-def]
    client, units, _ = pull(cams.url(path), 4.0, transport=transport)
    assert len(units) >= 50  # 25 fps for ~3 s after the first keyframe
    assert units[0].keyframe
    steps = {b.pts_90k - a.pts_90k for a, b in zip(units, units[1:])}
    assert steps == {3600}
    assert client.stats.lost_packets == 0 and client.stats.errors == 0
    assert decoded_frames(codec, units) == len(units)
    assert client.video is not None and client.video.parameter_sets
    if transport == "udp":
        assert client.stats.rcvbuf >= 8 * 1024 * 1024


def test_multi_slice_camera_gives_one_unit_per_picture_from_the_first(cams) -> None:  # type: ignore[no-untyped-def]
    _, units, _ = pull(cams.url("/slices"), 3.0)
    pts = [au.pts_90k for au in units]
    assert len(pts) == len(set(pts))  # frame 0 (and every other) once
    assert units[0].keyframe and sum(1 for n in units[0].nals if n[0] & 0x1F == 5) >= 2  # several IDR slices
    assert decoded_frames("h264", units) == len(units)


def test_aac_track_is_set_up_and_frames_arrive(cams) -> None:  # type: ignore[no-untyped-def]
    client, units, audio = pull(cams.url("/aac"), 3.0)
    assert units and len(audio) > 50
    assert client.audio is not None and client.audio.config
    steps = {b.pts - a.pts for a, b in zip(audio, audio[1:])}
    assert max(steps) - min(steps) <= 1  # ~1024 samples per frame


def test_basic_auth_and_a_wrong_password(cams) -> None:  # type: ignore[no-untyped-def]
    _, units, _ = pull(cams.url("/basic", user="admin", password="pw"), 2.5)
    assert units
    with pytest.raises(RtspError) as err:
        pull(cams.url("/basic", user="admin", password="nope"), 2.0)
    assert err.value.kind == "unauthorized" and "check the user and password" in str(err.value)
    with pytest.raises(RtspError) as err:
        pull(cams.url("/basic"), 2.0)
    assert err.value.kind == "unauthorized"


def test_digest_auth(camera_server) -> None:  # type: ignore[no-untyped-def]
    srv = camera_server({"/d": Mount("h264", size=SIZE, label="d1", user="admin", password="s3cret")}, auth="digest")
    client, units, _ = pull(srv.url("/d", user="admin", password="s3cret"), 2.5)
    assert units and client._auth is not None and client._auth.scheme == "digest"
    with pytest.raises(RtspError) as err:
        pull(srv.url("/d", user="admin", password="wrong"), 2.0)
    assert err.value.kind == "unauthorized"


def test_rtp_timestamp_wrap_keeps_pts_counting(cams) -> None:  # type: ignore[no-untyped-def]
    _, units, _ = pull(cams.url("/wrap"), 5.0)
    steps = {b.pts_90k - a.pts_90k for a, b in zip(units, units[1:])}
    assert steps == {3600} and len(units) > 75
    assert units[-1].pts_90k > 2**32  # past the wrap, still counting up


def test_unknown_path_and_closed_port_say_what_to_check(cams) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RtspError) as err:
        pull(cams.url("/nothing"), 1.0)
    assert err.value.kind == "not_found" and "path" in str(err.value)
    with pytest.raises(RtspError) as err:
        pull("rtsp://127.0.0.1:9/x", 1.0)
    assert err.value.kind == "refused"


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_keepalives_hold_a_session_the_server_would_time_out(camera_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    srv = camera_server({"/k": Mount("h264", size=SIZE, label="k1")}, session_timeout=2)
    client, units, _ = pull(srv.url("/k"), 7.0, transport=transport)
    assert client.stats.keepalives >= 3
    steps = {b.pts_90k - a.pts_90k for a, b in zip(units, units[1:])}
    assert steps == {3600} and len(units) > 125


def test_a_camera_that_drops_sessions_without_keepalives(camera_server) -> None:  # type: ignore[no-untyped-def]
    from tests.support.rtsp_udp_proxy import LossyRtspProxy

    srv = camera_server({"/ka": Mount("h264", size=SIZE, label="ka1")}, session_timeout=4)
    proxy = LossyRtspProxy("127.0.0.1", srv.port, loss=0, reorder=0, require_keepalive=3).start()
    try:
        client, units, _ = pull(proxy.url("/ka"), 8.0)  # keep-alives every 2 s (half the 4 s timeout)
        assert proxy.closed_idle == 0 and client.stats.keepalives >= 2 and len(units) > 150
        with pytest.raises(RtspError) as err:  # the same client without keep-alives is cut off
            pull(proxy.url("/ka"), 8.0, keepalive_interval=1000)
        assert err.value.kind == "closed" and proxy.closed_idle == 1
    finally:
        proxy.stop()


def test_a_redirect_is_followed_to_the_camera(cams) -> None:  # type: ignore[no-untyped-def]
    from tests.support.rtsp_udp_proxy import LossyRtspProxy

    proxy = LossyRtspProxy("127.0.0.1", cams.port, loss=0, reorder=0, redirect=cams.url("/h264")).start()
    try:
        client, units, _ = pull(proxy.url("/moved"), 3.0)
    finally:
        proxy.stop()
    assert proxy.redirected == 1 and units and client.url == cams.url("/h264")
