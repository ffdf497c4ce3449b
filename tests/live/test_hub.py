"""The live hub on real encodes: GOP-cache start, slow viewers, reconnects, parameters."""

from __future__ import annotations

import asyncio

import av

from storage.mp4.nal import NAL_SPS, nal_type
from ingest.live.hub import LiveHubs, annexb, parameter_sets_from_extradata
from tests.support.packets import encode


class _Session:
    """Just what ``LiveHub.attach`` uses of a ``CameraSession``: its camera id, stream and taps."""

    def __init__(self) -> None:
        self.taps: list = []

        class Cam:
            id = "cam-1"

        self.camera = Cam()
        self.stream = "main"


def decode(aus) -> list[av.VideoFrame]:
    dec = av.CodecContext.create("h264", "r")
    frames = []
    for au in aus:
        frames.extend(dec.decode(av.Packet(annexb(au))))
    return frames


def drain(sub) -> list:
    out = []
    while (au := sub.get_nowait()) is not None:
        out.append(au)
    return out


def run(coro):
    return asyncio.run(coro)


def test_a_new_viewer_starts_at_the_last_keyframe_with_parameter_sets():
    enc = encode(seconds=2.4, gop=50)
    # Strip the in-band SPS/PPS, as many cameras send them only in the SDP.
    packets = []
    for p in enc.video_packets:
        data = b"".join(b"\x00\x00\x00\x01" + n for n in _nals(bytes(p)) if nal_type(n) not in (7, 8))
        q = av.Packet(data)
        q.pts, q.dts, q.time_base, q.is_keyframe, q.stream = p.pts, p.dts, p.time_base, p.is_keyframe, p.stream
        packets.append(q)

    async def main():
        hubs = LiveHubs()
        hubs.bind_loop(asyncio.get_running_loop())
        session = _Session()
        hub = hubs.attach(session)
        for p in packets:
            session.taps[0](p)
        await asyncio.sleep(0)  # let the posted access units land
        assert hub.params is not None and hub.params.width == 320 and hub.params.height == 180
        assert hub.params.sps is not None and nal_type(hub.params.sps) == NAL_SPS
        sub = hub.subscribe()
        got = drain(sub)
        assert got[0].keyframe and len(got) == len(packets) - 50  # the GOP since frame 50
        assert nal_type(got[0].nals[0]) == NAL_SPS  # parameter sets put back in front
        assert len(decode(got)) == len(got)
        assert hub.fanout.subscriber_count == 1
        sub.close()
        assert hub.fanout.subscriber_count == 0

    run(main())


def _nals(data: bytes) -> list[bytes]:
    from storage.mp4.nal import split_annexb

    return split_annexb(data)


def test_a_slow_viewer_skips_to_the_next_keyframe_and_never_holds_back_the_others():
    enc = encode(seconds=6, gop=50)

    async def main():
        hubs = LiveHubs()
        hubs.bind_loop(asyncio.get_running_loop())
        session = _Session()
        hub = hubs.attach(session)
        slow = hub.subscribe(max_queue=60)  # more than a GOP (50), less than the run
        fast = hub.subscribe()
        got_fast = []
        for p in enc.video_packets:
            session.taps[0](p)  # the camera side never waits for anyone
            await asyncio.sleep(0)
            got_fast.extend(drain(fast))
        got_slow = drain(slow)
        assert len(got_fast) == len(enc.video_packets)
        assert slow.overflows > 0 and slow.dropped > 0
        assert got_slow and got_slow[0].keyframe
        assert len(decode(got_slow)) == len(got_slow)  # whole GOPs only: it all decodes

    run(main())


def test_viewers_stay_subscribed_across_a_reconnect_and_hear_the_new_parameters():
    first = encode(seconds=2, gop=25, size=(320, 180))
    second = encode(seconds=2, gop=25, size=(640, 360))  # the camera came back in another mode

    async def main():
        hubs = LiveHubs()
        hubs.bind_loop(asyncio.get_running_loop())
        session = _Session()
        hub = hubs.attach(session)
        announced = []
        hub.on_params.append(announced.append)
        sub = hub.subscribe()
        for p in first.video_packets:
            session.taps[0](p)
        # The supervisor restarts the session: a new one is attached to the same hub.
        again = _Session()
        assert hubs.attach(again) is hub
        for p in second.video_packets:
            again.taps[0](p)
        await asyncio.sleep(0)
        got = drain(sub)
        assert len(got) == len(first.video_packets) + len(second.video_packets)
        pts = [au.pts_90k for au in got]
        assert all(b > a for a, b in zip(pts, pts[1:]))  # one timeline, no jump back
        assert [(p.width, p.height) for p in announced] == [(320, 180), (640, 360)]
        assert announced[1].generation == announced[0].generation + 1
        sizes = {(f.width, f.height) for f in decode(got)}
        assert sizes == {(320, 180), (640, 360)}

    run(main())


def test_parameter_sets_from_avcc_extradata():
    enc = encode(seconds=0.4)
    sps, pps = parameter_sets_from_extradata("h264", enc.video.codec_context.extradata)
    avcc = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps + b"\x01" + len(pps).to_bytes(2, "big") + pps
    assert parameter_sets_from_extradata("h264", avcc) == (sps, pps)


def test_removing_a_camera_ends_its_viewers_and_tells_the_restream():
    enc = encode(seconds=0.4)

    async def main():
        hubs = LiveHubs()
        hubs.bind_loop(asyncio.get_running_loop())
        removed = []
        hubs.on_removed_hub.append(removed.append)
        session = _Session()
        hub = hubs.attach(session)
        sub = hub.subscribe()
        for p in enc.video_packets:
            session.taps[0](p)
        hubs.remove("cam-1", "main")
        await asyncio.sleep(0)
        got = [au async for au in sub]  # drains what was queued, then ends
        assert len(got) == len(enc.video_packets)
        assert removed == [hub] and hubs.get("cam-1", "main") is None

    run(main())


def test_a_hub_without_a_loop_drops_quietly():
    enc = encode(seconds=0.2)
    hubs = LiveHubs()  # never bound: nobody can watch yet
    session = _Session()
    hub = hubs.attach(session)
    for p in enc.video_packets:
        session.taps[0](p)  # must not raise (a raising tap would be logged on every packet)
    assert hub.params is not None and hub.access_units == len(enc.video_packets)
    loop = asyncio.new_event_loop()
    hubs.bind_loop(loop)
    loop.close()
    session.taps[0](enc.video_packets[0])  # the loop closed at shutdown: still quiet
    hubs.post(print, "never printed")  # a post to the closed loop is dropped, and the loop forgotten
    assert hubs.loop is None


def test_an_unwatched_hub_wakes_no_event_loop_and_the_first_viewer_still_starts_at_once():
    enc = encode(seconds=2.4, gop=50)

    async def main():
        loop = asyncio.get_running_loop()
        hubs = LiveHubs()
        hubs.bind_loop(loop)
        posts = []
        real_post = hubs.post
        hubs.post = lambda fn, *args: (posts.append(fn), real_post(fn, *args))  # count, then post
        session = _Session()
        hub = hubs.attach(session)
        for p in enc.video_packets:
            session.taps[0](p)
        await asyncio.sleep(0)
        assert [fn for fn in posts if getattr(fn, "__name__", "") == "publish"] == []
        sub = hub.subscribe()
        got = drain(sub)
        assert got and got[0].keyframe and len(got) == len(enc.video_packets) - 50  # the GOP since frame 50
        assert len(decode(got)) == len(got)
        sub.close()

    run(main())
