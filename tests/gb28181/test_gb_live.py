"""GB/T 28181 live media: SIPp answers our INVITE as a device, an independent PS muxer sends
(GStreamer mpegpsmux for H.264 with a PSM; ffmpeg -f mpeg for H.265, which writes no PSM, so
our demuxer's no-PSM path is what reads it), framed into RTP by the test-only framer, over UDP,
TCP passive (the device connects) and TCP active (we connect). Recorded by the real supervisor;
checked from the index and the objects: coverage, contiguity, every frame decodes, frame
numbers continuous.

The default run records ``GB_LIVE_SECONDS`` (16 s) per case; ``-m slow`` runs the 60 s
acceptance version of each (``test_sixty_seconds``).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ingest.gb28181.sip import Peer
from storage.index.segments import now_us
from tests.support.clips import Clip, make_clip
from tests.support.gb_device import SippDevice
from tests.support.gb_media import GbRecorder, segment_frame_codes
from tests.support.sipp import needs_sipp

pytestmark = needs_sipp

DEVICE = "34020000001110000001"
CHANNEL = "34020000001320000001"
SECONDS = int(os.environ.get("GB_LIVE_SECONDS", "16"))
FRAME_US = 40_000


def _media(codec: str, seconds: int, tmp: Path) -> tuple[Clip, Path, str]:
    """(clip, the file the device plays, the PS muxer): gst for H.264 (from an MP4), ffmpeg for H.265."""
    clip = make_clip(codec, size=(640, 360), seconds=seconds, label="gb")
    if codec == "h265":
        return clip, clip.video, "ffmpeg"
    if codec == "h264_bframes":
        return clip, clip.video, "gst"  # an MP4 already (B-frames need its decode times)
    mp4 = tmp / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-r", str(clip.fps), "-f", "h264",
                    "-i", str(clip.video), "-c", "copy", str(mp4)], check=True, timeout=60)
    return clip, mp4, "gst"


def _check_recording(rec: GbRecorder, clip: Clip, stopped_us: int, codec: str) -> None:
    segs = rec.index.segments(CHANNEL, "main")
    assert segs, "nothing recorded"
    covered = sum(s.end_us - s.start_us for s in segs)
    coverage = covered / (stopped_us - segs[0].start_us)
    assert coverage >= 0.98, f"coverage {coverage:.3f} over {len(segs)} segments"
    codes: list[int] = []
    prev = None
    for n, s in enumerate(segs):
        data = rec.services.store.get_range(s.object_key, 0, s.bytes)
        assert hashlib.sha256(data).hexdigest() == s.sha256
        if prev is not None:
            assert abs(s.start_us - prev.end_us) <= FRAME_US, f"not contiguous at {s.start_us}"
        got_codec, seg_codes, key_first = segment_frame_codes(data)
        assert got_codec == ("hevc" if codec == "h265" else "h264") and key_first
        if codec == "h264_bframes" and n == len(segs) - 1:
            # Stopped mid-GOP: the last P-frame came, the B-frames presented before it had not
            # (they follow it in decode order). At most the clip's 3 B-frames are missing.
            span = (seg_codes[-1] - seg_codes[0]) % clip.frames + 1
            assert span - len(seg_codes) <= 3 and abs(span * FRAME_US - (s.end_us - s.start_us)) <= 2 * FRAME_US
            seg_codes = list(range(seg_codes[0], seg_codes[0] + span))
        assert abs(len(seg_codes) * FRAME_US - (s.end_us - s.start_us)) <= 2 * FRAME_US
        codes += seg_codes
        prev = s
    steps = [(b - a) % clip.frames for a, b in zip(codes, codes[1:])]
    assert set(steps) == {1}, f"frame numbers not continuous: {[i for i, d in enumerate(steps) if d != 1][:5]}"


def _record(tmp_path: Path, codec: str, transport: str, seconds: int) -> None:
    clip, media, kind = _media(codec, 24 if seconds <= 20 else seconds + 24, tmp_path)
    device = SippDevice(tmp_path, transport=transport, ps_kind=kind, media=media, loop=kind == "ffmpeg").start()
    try:
        with GbRecorder.start(tmp_path, {CHANNEL: (DEVICE, Peer("UDP", "127.0.0.1", device.port))},
                              transport=transport, segment_target_seconds=4) as rec:  # type: ignore[arg-type]
            rec.wait_for(lambda: rec.status(CHANNEL).get("state") == "recording", 30, "the channel recording")
            time.sleep(seconds)
            session = rec.session(CHANNEL)
            invite = session.last_invite
            rstats = dict(session.receiver_stats)
            # The window ends when we ask to stop: the time close() takes to flush and upload is
            # not recording time, and on a loaded machine it can be a few percent of a short run.
            stopped = now_us()
            left = rec.close()
            assert left == 0
            assert invite is not None and invite.status == 200 and invite.transport == transport
            assert rstats["lost"] == 0 and rstats["packets"] > 0
            assert rstats["framing"] == ("" if transport == "udp" else "rfc4571")
            _check_recording(rec, clip, stopped, codec)
    finally:
        device.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp-passive", "tcp-active"])
@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_live(tmp_path: Path, codec: str, transport: str) -> None:
    _record(tmp_path, codec, transport, SECONDS)


def test_b_frames_over_ps(tmp_path: Path) -> None:
    """A device whose H.264 has B-frames (PES headers with a DTS apart from the PTS, from
    GStreamer's mpegpsmux): recorded by decode time, contiguous, every frame decodes in order."""
    _record(tmp_path, "h264_bframes", "udp", SECONDS)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["udp", "tcp-passive", "tcp-active"])
@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_sixty_seconds(tmp_path: Path, codec: str, transport: str) -> None:
    _record(tmp_path, codec, transport, 60)


@pytest.mark.parametrize("answer_ssrc,media_ssrc,mismatch", [("offer", "0", True), ("0300000009", "", False)])
def test_ssrc_is_counted_never_dropped(tmp_path: Path, answer_ssrc: str, media_ssrc: str, mismatch: bool) -> None:
    """Dahua: agrees to our SSRC and sends 0 (counted, recorded). A lower platform choosing its own
    SSRC in its 200 OK: that one is expected from then on (no mismatch)."""
    clip, media, kind = _media("h264", 24, tmp_path)
    device = SippDevice(tmp_path, ps_kind=kind, media=media, ssrc=answer_ssrc, media_ssrc=media_ssrc).start()
    try:
        with GbRecorder.start(tmp_path, {CHANNEL: (DEVICE, Peer("UDP", "127.0.0.1", device.port))},
                              segment_target_seconds=2) as rec:
            rec.wait_for(lambda: rec.index.segments(CHANNEL, "main") != [], 30, "a segment")
            stats = rec.session(CHANNEL).receiver_stats
            assert stats["ssrc"] == (0 if media_ssrc == "0" else 300000009)
            assert (stats["ssrc_mismatches"] > 0) == mismatch  # type: ignore[operator]
    finally:
        device.stop()


def test_rtp_to_a_port_with_no_session(tmp_path: Path) -> None:
    """Datagrams to pool ports that no session holds change nothing for the session that records."""
    clip, media, kind = _media("h264", 24, tmp_path)
    device = SippDevice(tmp_path, ps_kind=kind, media=media).start()
    try:
        with GbRecorder.start(tmp_path, {CHANNEL: (DEVICE, Peer("UDP", "127.0.0.1", device.port))},
                              ports=(31200, 31209), segment_target_seconds=2) as rec:
            rec.wait_for(lambda: rec.status(CHANNEL).get("state") == "recording", 30, "recording")
            used = rec.session(CHANNEL).receiver_stats["port"]
            junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for port in range(31200, 31210):
                if port != used:
                    for _ in range(50):
                        junk.sendto(b"\x80\x60\x00\x01" + bytes(200), ("127.0.0.1", port))
            junk.close()
            before = rec.session(CHANNEL).status.segments
            rec.wait_for(lambda: rec.session(CHANNEL).status.segments >= before + 2, 20, "recording going on")
            assert rec.status(CHANNEL)["state"] == "recording"
    finally:
        device.stop()


def _gaps(rec: GbRecorder) -> list:  # type: ignore[type-arg]
    return rec.index.gaps(CHANNEL, "main", 0, now_us() + 10**9)


@pytest.mark.parametrize("answer", ["488", "silent"])
def test_invite_refused_or_unanswered(tmp_path: Path, answer: str) -> None:
    device = SippDevice(tmp_path, answer=answer).start()
    try:
        with GbRecorder.start(tmp_path, {CHANNEL: (DEVICE, Peer("UDP", "127.0.0.1", device.port))}) as rec:
            rec.wait_for(lambda: rec.session(CHANNEL).last_invite is not None, 30, "an INVITE outcome")
            rec.wait_for(lambda: any(g.reason == "invite_refused" for g in _gaps(rec)), 30, "an invite_refused gap")
            invite = rec.session(CHANNEL).last_invite
            assert invite is not None and invite.status == (488 if answer == "488" else 408)
            status = rec.status(CHANNEL)
            assert status["state"] == "offline"
            assert ("488" in status["last_error"]) if answer == "488" else ("did not answer" in status["last_error"])
            assert rec.devices.invites and rec.devices.invites[0][2] == "invite_refused"  # for gb doctor
    finally:
        device.stop()


def test_device_offline(tmp_path: Path) -> None:
    with GbRecorder.start(tmp_path, {CHANNEL: (DEVICE, None)}) as rec:
        rec.wait_for(lambda: any(g.reason == "device_offline" for g in _gaps(rec)), 30, "a device_offline gap")
        assert "offline" in rec.status(CHANNEL)["last_error"]


def test_media_stops_but_device_stays(tmp_path: Path) -> None:
    """The device accepts, sends 6 s of media, then nothing (its SIP side still answers): the gap
    says media_timeout, and the next INVITE (backoff) records again."""
    clip, media, kind = _media("h265", 24, tmp_path)
    device = SippDevice(tmp_path, ps_kind="ffmpeg", media=media, media_seconds=6).start()
    try:
        with GbRecorder.start(tmp_path, {CHANNEL: (DEVICE, Peer("UDP", "127.0.0.1", device.port))},
                              segment_target_seconds=2, stall_timeout_seconds=3) as rec:
            rec.wait_for(lambda: any(g.reason == "media_timeout" for g in _gaps(rec)), 40, "a media_timeout gap")
            first = rec.index.segments(CHANNEL, "main")
            assert first, "the first 6 s were recorded"
            # The re-INVITE gets 6 s more: recording resumes after the gap.
            rec.wait_for(lambda: len(rec.index.segments(CHANNEL, "main")) > len(first)
                         and rec.index.segments(CHANNEL, "main")[-1].start_us > first[-1].end_us + 1_000_000,
                         40, "recording after the re-INVITE")
    finally:
        device.stop()


def test_backfill_downloads_a_gap_marked_as_from_the_device(tmp_path: Path) -> None:
    """s=Download of a past range we have nothing for: ordinary segments, placed by the device's
    clock at the range asked, origin "device" in the index and in the manifest's segment list."""
    from ingest.gb28181.media.backfill import DeviceBackfill
    from storage.evidence.manifest import SourceSegment

    clip, media, kind = _media("h264", 24, tmp_path)
    device = SippDevice(tmp_path, ps_kind=kind, media=media).start()
    try:
        with GbRecorder.start(tmp_path, {CHANNEL: (DEVICE, Peer("UDP", "127.0.0.1", device.port))},
                              live=False) as rec:
            sup = rec.supervisor
            camera = rec.services.registry.camera(CHANNEL)
            start = (now_us() // 1_000_000 - 3600) * 1_000_000
            end = start + 8_000_000
            job = DeviceBackfill(rec.link, camera, DEVICE, rec.index, sup.spool, on_closed=sup.uploader.notify,
                                 target_us=4_000_000, media_timeout=3)
            report = job.run(start, end)
            assert [p.error for p in report.parts] == [""] and report.segments >= 2
            rec.wait_for(lambda: len(rec.index.segments(CHANNEL, "main")) == report.segments, 20, "uploads")
            segs = rec.index.segments(CHANNEL, "main")
            assert segs[0].start_us == start and segs[-1].end_us <= end
            assert sum(s.end_us - s.start_us for s in segs) >= 0.95 * (end - start)
            assert {s.origin for s in segs} == {"device"}
            assert SourceSegment.from_row(segs[0]).as_dict()["origin"] == "device"
            codes: list[int] = []
            for s in segs:
                _, seg_codes, key_first = segment_frame_codes(rec.services.store.get_range(s.object_key, 0, s.bytes))
                assert key_first
                codes += seg_codes
            assert codes == list(range(codes[0], codes[0] + len(codes)))
            # Asked again, nothing is missing: no INVITE, no new segment.
            assert DeviceBackfill(rec.link, camera, DEVICE, rec.index, sup.spool,
                                  on_closed=sup.uploader.notify).run(start, end).parts == []
    finally:
        device.stop()


def test_device_playback_streams_mp4(tmp_path: Path) -> None:
    """s=Playback of a past range: fragmented MP4 handed out as it comes; every frame decodes."""
    import io

    import av

    from ingest.gb28181.media.playback import DevicePlayback
    from tests.support.clips import read_frame_code

    clip, media, kind = _media("h265", 24, tmp_path)
    device = SippDevice(tmp_path, ps_kind="ffmpeg", media=media, loop=True).start()
    try:
        with GbRecorder.start(tmp_path, {CHANNEL: (DEVICE, Peer("UDP", "127.0.0.1", device.port))},
                              live=False) as rec:
            start = (now_us() // 1_000_000 - 7200) * 1_000_000
            play = DevicePlayback(rec.link, CHANNEL, DEVICE, media_timeout=3)
            chunks = list(play.mp4(start, start + 4_000_000))
            assert len(chunks) > 1  # handed out in pieces, not at the end
            with av.open(io.BytesIO(b"".join(chunks))) as c:
                assert c.streams.video[0].codec_context.name == "hevc"
                codes = [read_frame_code(f.to_ndarray(format="gray")) for f in c.decode(video=0)]
            assert len(codes) == play.frames and 95 <= len(codes) <= 100
            assert codes == list(range(codes[0], codes[0] + len(codes)))
    finally:
        device.stop()
