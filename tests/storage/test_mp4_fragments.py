"""The native fMP4 writer: FFmpeg plays what it writes, and storage's parser reads it as it reads
PyAV's segments (one moof+mdat per GOP, keyframe first, continuous decode times)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from ingest.rtp.audio import AacDepacketizer, parse_fmtp
from ingest.rtp.packet import parse_rtp
from ingest.rtp.video import H264Depacketizer, H265Depacketizer
from storage.mp4.boxes import iter_boxes
from storage.mp4.decode_time import DecodeTimes
from storage.mp4.fragments import (
    AudioSample, AudioTrack, VideoSample, VideoTrack, fragment, init_segment, length_prefixed,
)
from storage.mp4.read import parse_init, scan_fragments
from storage.mp4.sps import parse_sps
from tests.support.rtp_peer import capture_aac, capture_video, caps_field


def gops(units):  # type: ignore[no-untyped-def]
    out: list[list] = []  # type: ignore[type-arg]
    for au in units:
        if au.keyframe or not out:
            out.append([])
        out[-1].append(au)
    return out


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_segment_plays_in_ffmpeg_and_parses_as_pyav_segments_do(tmp_path: Path, codec: str) -> None:
    cap = capture_video(tmp_path, codec, frames=50, gop=10, size=(640, 480))
    dep = H264Depacketizer() if codec == "h264" else H265Depacketizer()
    units = [au for p in cap.packets if (au := dep.push(parse_rtp(p))) is not None]
    sps = dep.parameter_sets[-2]
    info = parse_sps(codec, sps)
    track = VideoTrack(codec, dep.parameter_sets, info.width, info.height)
    dts = DecodeTimes(0, 3600)
    base = units[0].pts_90k
    data = bytearray(init_segment(track, metadata={"title": "cam/main", "comment": "sharpeyes start_us=1"}))
    offsets = []
    all_units = units
    for seq, gop in enumerate(gops(units), 1):
        samples = []
        first_dts = None
        for au in gop:
            d, p = dts.push(au.pts_90k - base)
            first_dts = d if first_dts is None else first_dts
            nxt = all_units.index(au) + 1
            dur = (all_units[nxt].pts_90k - au.pts_90k) if nxt < len(all_units) else 3600
            samples.append(VideoSample(length_prefixed(au.nals), dur, p - d, au.keyframe))
        offsets.append(len(data))
        data += fragment(seq, first_dts or 0, samples)
    path = tmp_path / f"seg-{codec}.mp4"
    path.write_bytes(bytes(data))

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (640, 480)
        if codec == "h265":
            assert s.codec_tag == "hvc1"
        frames = list(c.decode(s))
    assert len(frames) == 50
    assert [f.pts for f in frames] == [3600 * i for i in range(50)]

    tracks = parse_init(bytes(data))
    frags = scan_fragments(bytes(data), tracks)
    assert [f.moof_offset for f in frags] == offsets and len(frags) == 5
    assert all(f.runs[1].samples[0].keyframe and not any(x.keyframe for x in f.runs[1].samples[1:]) for f in frags)
    times = [f.runs[1].base_decode_time for f in frags]
    assert times == [36000 * i for i in range(5)]
    assert [b.type for b in iter_boxes(bytes(data))] == ["ftyp", "moov"] + ["moof", "mdat"] * 5


def test_audio_track_plays_beside_the_video(tmp_path: Path) -> None:
    vcap = capture_video(tmp_path, "h264", frames=25, gop=25)
    dep = H264Depacketizer()
    units = [au for p in vcap.packets if (au := dep.push(parse_rtp(p))) is not None]
    acap = capture_aac(tmp_path, buffers=50)
    fmtp = ";".join(f"{k}={caps_field(acap.caps, k)}" for k in ("mode", "config", "sizelength", "indexlength",
                                                                "indexdeltalength"))
    adep = AacDepacketizer(parse_fmtp(fmtp), 48000)
    frames = [f for p in acap.packets for f in adep.push(parse_rtp(p))]
    sps, pps = dep.parameter_sets
    info = parse_sps("h264", sps)
    data = init_segment(VideoTrack("h264", (sps, pps), info.width, info.height), AudioTrack(adep.config, 48000, 1))
    vs = [VideoSample(length_prefixed(au.nals), 3600, 0, au.keyframe) for au in units]
    aus = [AudioSample(f.data, 1024) for f in frames if f.pts - frames[0].pts < 48000]
    data += fragment(1, 0, vs, 0, aus)
    path = tmp_path / "av.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.audio[0].codec_context.sample_rate == 48000
        decoded_audio = list(c.decode(c.streams.audio[0]))
    with av.open(str(path)) as c:
        decoded_video = list(c.decode(c.streams.video[0]))
    assert len(decoded_video) == 25 and len(decoded_audio) >= len(aus) - 2
