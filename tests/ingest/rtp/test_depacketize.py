"""Depacketisers against GStreamer's payloaders: the NAL units that went in come out, one unit per picture.

Each test decodes what came out with FFmpeg (PyAV) as the second, independent judge.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import Any

import av
import pytest

from ingest.access_unit import AccessUnit
from ingest.rtp.audio import AacDepacketizer, parse_fmtp
from ingest.rtp.framing import InterleavedDecoder, interleave
from ingest.rtp.packet import RtpError, RtpPacket, parse_rtp
from ingest.rtp.video import H264Depacketizer, H265Depacketizer, VideoDepacketizer, decode_sprop
from storage.mp4.nal import split_annexb
from tests.support.rtp_peer import capture_aac, capture_video, caps_field

AUD = {"h264": lambda n: n[0] & 0x1F == 9, "h265": lambda n: (n[0] >> 1) & 0x3F == 35}


def depacketize(dep: VideoDepacketizer, packets: list[RtpPacket]) -> list[AccessUnit]:
    out = [au for p in packets if (au := dep.push(p)) is not None]
    last = dep.flush()
    return out + ([last] if last is not None else [])


def decode(codec: str, units: list[AccessUnit]) -> int:
    ctx: Any = av.CodecContext.create({"h265": "hevc"}.get(codec, codec), "r")
    n = 0
    for au in units:
        data = b"".join(b"\x00\x00\x00\x01" + nal for nal in au.nals)
        n += len(ctx.decode(av.Packet(data)))
    n += len(ctx.decode(None))
    return n


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize("slices", [1, 4])
def test_every_nal_comes_back_one_unit_per_picture(tmp_path: Path, codec: str, slices: int) -> None:
    cap = capture_video(tmp_path, codec, frames=30, slices=slices, size=(640, 480),
                        pay_options="aggregate-mode=zero-latency")
    packets = [parse_rtp(p) for p in cap.packets]
    dep = H264Depacketizer() if codec == "h264" else H265Depacketizer()
    units = depacketize(dep, packets)
    assert len(units) == 30 and dep.errors == 0 and dep.dropped_frames == 0
    want = [n for n in split_annexb(cap.reference) if not AUD[codec](n)]
    assert [n for au in units for n in au.nals if not AUD[codec](n)] == want
    assert [au.keyframe for au in units] == [i % 10 == 0 for i in range(30)]
    assert [au.pts_90k - units[0].pts_90k for au in units] == [3600 * i for i in range(30)]
    assert len(dep.parameter_sets) == (2 if codec == "h264" else 3)
    assert decode(codec, units) == 30


def test_stap_a_and_fu_a_are_both_used_and_timestamps_and_sequence_wrap(tmp_path: Path) -> None:
    # Start 1 s before the 32-bit timestamp wraps and 20 packets before the sequence wraps.
    cap = capture_video(tmp_path, "h264", frames=50, size=(640, 480), pay_options="aggregate-mode=zero-latency",
                        timestamp_offset=2**32 - 90000, seqnum_offset=65516)
    packets = [parse_rtp(p) for p in cap.packets]
    kinds = {p.payload[0] & 0x1F for p in packets}
    assert {24, 28} <= kinds  # STAP-A (SPS+PPS) and FU-A (big slices) from an independent payloader
    assert any(p.timestamp < 90000 for p in packets) and any(p.sequence < 100 for p in packets)
    units = depacketize(H264Depacketizer(), packets)
    pts = [au.pts_90k for au in units]
    assert len(units) == 50 and pts == [pts[0] + 3600 * i for i in range(50)]  # no jump at the wrap
    assert decode("h264", units) == 50


def test_parameter_sets_from_sprop_before_any_packet() -> None:
    sps = bytes.fromhex("6742c01e95a0501e")
    pps = bytes.fromhex("68ce3c80")
    sprop = ",".join(base64.b64encode(x).decode() for x in (sps, pps))
    assert H264Depacketizer(sprop).parameter_sets == (sps, pps)
    assert decode_sprop("Z0LAHpWgUB4=,aM48gA==,!!") == [sps, pps]  # unpadded entries too; junk skipped


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_a_lost_packet_drops_its_frame_and_output_resumes_at_the_next_keyframe(tmp_path: Path, codec: str) -> None:
    cap = capture_video(tmp_path, codec, frames=40, gop=10, size=(640, 480))
    packets = [parse_rtp(p) for p in cap.packets]
    clean = depacketize(H264Depacketizer() if codec == "h264" else H265Depacketizer(), packets)
    ts_of_frame = [au.pts_90k for au in clean]
    # Lose one packet in the middle of picture 13 (a P-frame): pictures 13..19 are dropped.
    base = packets[0].timestamp
    victim = [i for i, p in enumerate(packets) if (p.timestamp - base) & 0xFFFFFFFF == 13 * 3600][0]
    lossy = packets[:victim] + packets[victim + 1:]
    dep = H264Depacketizer() if codec == "h264" else H265Depacketizer()
    units = depacketize(dep, lossy)
    got = [ts_of_frame.index(au.pts_90k) for au in units]
    assert got == list(range(13)) + list(range(20, 40))
    # Picture 13 was seen in part (and dropped) unless the lost packet was all of it.
    seen_13 = sum(1 for p in packets if (p.timestamp - base) & 0xFFFFFFFF == 13 * 3600) > 1
    assert dep.errors == 1 and dep.lost_packets == 1 and dep.dropped_frames == 6 + seen_13
    assert decode(codec, units) == 33


def test_random_loss_never_gives_out_a_unit_that_ffmpeg_cannot_decode(tmp_path: Path) -> None:
    cap = capture_video(tmp_path, "h264", frames=60, gop=10, size=(640, 480))
    packets = [parse_rtp(p) for p in cap.packets]
    rng = random.Random(7)
    lossy = [p for p in packets if rng.random() > 0.02]
    dep = H264Depacketizer()
    units = depacketize(dep, lossy)
    assert dep.errors > 0 and 0 < len(units) < 60 and units[0].keyframe
    ctx: Any = av.CodecContext.create("h264", "r")
    decoded = 0
    for au in units:  # raises on a broken unit
        decoded += len(ctx.decode(av.Packet(b"".join(b"\x00\x00\x00\x01" + n for n in au.nals))))
    assert decoded + len(ctx.decode(None)) == len(units)


def test_output_starts_at_a_keyframe_and_a_unit_without_marker_ends_at_the_next_timestamp(tmp_path: Path) -> None:
    cap = capture_video(tmp_path, "h264", frames=20, gop=10)
    packets = [parse_rtp(p) for p in cap.packets]
    for p in packets:
        p.marker = False  # a camera that never sets the marker bit
    skip = next(i for i, p in enumerate(packets) if p.timestamp != packets[0].timestamp)
    dep = H264Depacketizer()
    units = depacketize(dep, packets[skip:])  # join after the first keyframe
    assert len(units) == 10 and units[0].keyframe and dep.dropped_frames == 9


def test_aac_frames_from_rtpmp4gpay(tmp_path: Path) -> None:
    cap = capture_aac(tmp_path, buffers=40)
    fmtp = {k: caps_field(cap.caps, k) for k in ("mode", "config", "sizelength", "indexlength", "indexdeltalength")}
    dep = AacDepacketizer(parse_fmtp(";".join(f"{k}={v}" for k, v in fmtp.items())), 48000)
    frames = [f for p in cap.packets for f in dep.push(parse_rtp(p))]
    # The ADTS reference without its 7-byte headers (no CRC) is exactly the frames.
    adts, raw = cap.reference, []
    pos = 0
    while pos < len(adts):
        size = ((adts[pos + 3] & 3) << 11) | (adts[pos + 4] << 3) | (adts[pos + 5] >> 5)
        raw.append(adts[pos + 7:pos + size])
        pos += size
    assert [f.data for f in frames] == raw and dep.errors == 0
    # The RTP timestamps, which GStreamer rounds from nanoseconds: within a tick of 1024 a frame.
    assert all(abs(f.pts - frames[0].pts - 1024 * i) <= 1 for i, f in enumerate(frames))
    assert dep.config == bytes.fromhex(fmtp["config"])


def test_aac_several_frames_in_one_packet_and_a_fragmented_frame() -> None:
    fmtp = parse_fmtp("streamtype=5; mode=AAC-hbr; config=1190; SizeLength=13; IndexLength=3; IndexDeltaLength=3")
    dep = AacDepacketizer(fmtp, 48000)
    a, b = b"A" * 10, b"B" * 300
    headers = ((len(a) << 3) << 16) | (len(b) << 3)  # two 16-bit AU headers
    two = (32).to_bytes(2, "big") + headers.to_bytes(4, "big") + a + b
    out = dep.push(RtpPacket(97, 1, 5000, 1, two, marker=True))
    assert [(f.data, f.pts) for f in out] == [(a, 5000), (b, 6024)]
    big = b"C" * 3000
    head = (16).to_bytes(2, "big") + (len(big) << 3).to_bytes(2, "big")
    assert dep.push(RtpPacket(97, 2, 7048, 1, head + big[:1400])) == []
    assert dep.push(RtpPacket(97, 3, 7048, 1, head + big[1400:2800])) == []
    (f,) = dep.push(RtpPacket(97, 4, 7048, 1, head + big[2800:], marker=True))
    assert f.data == big and f.pts == 7048


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_the_fused_path_from_an_interleaved_buffer_gives_the_same_units_as_parsed_packets(
        tmp_path: Path, codec: str) -> None:
    # push_rtp reads the header itself and slices payloads out of the read buffer: every unit
    # (NALs, pts, keyframe) must be what push(parse_rtp(...)) gives, frames framed anywhere.
    cap = capture_video(tmp_path, codec, frames=20, slices=2, size=(640, 480))
    stream = b"".join(interleave(0, p) for p in cap.packets)
    # A packet with a header extension and a CSRC takes the full parser; it must still count.
    odd = RtpPacket(96, 0, 0, 7, b"\x00", csrc=(1,), extension_profile=0xBEDE, extension=b"\x00" * 4)
    reference = depacketize(H264Depacketizer() if codec == "h264" else H265Depacketizer(),
                            [parse_rtp(p) for p in cap.packets])
    dep = H264Depacketizer() if codec == "h264" else H265Depacketizer()
    decoder = InterleavedDecoder()
    rng = random.Random(5)
    got: list[AccessUnit] = []
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 9000)
        buf, items = decoder.feed_spans(stream[pos:pos + step])
        pos += step
        i = 0
        while i < len(items):
            assert items[i] == 0
            au = dep.push_rtp(buf, items[i + 1], items[i + 2])  # type: ignore[arg-type]
            if au is not None:
                got.append(au)
            i += 3
    last = dep.flush()
    got += [last] if last is not None else []
    assert [(au.nals, au.pts_90k, au.keyframe) for au in got] == \
        [(au.nals, au.pts_90k, au.keyframe) for au in reference]
    assert len(got) == 20 and dep.errors == 0 and dep.packets == len(cap.packets)
    with pytest.raises(RtpError):
        dep.push_rtp(b"\x80\x60\x00")
    seq = dep.last_sequence
    dep.push_rtp(RtpPacket(96, (seq + 1) & 0xFFFF, 0, 7, odd.payload, csrc=odd.csrc,
                           extension_profile=odd.extension_profile, extension=odd.extension).to_bytes())
    assert dep.last_sequence == (seq + 1) & 0xFFFF and dep.ssrc == 7
