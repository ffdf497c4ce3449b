"""PsDemuxer against independent PS muxers (GStreamer mpegpsmux, ffmpeg -f mpeg); PsMuxer read by FFmpeg.

Every test decodes what comes out with PyAV and reads the burned-in frame codes back, so
"all frames, in order, decodable" is checked on the pictures, not on our own counters.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import av
import pytest

from ingest.gb28181.ps import AudioFrame, PsDemuxer, VideoFrame, detect_codec, parse_psm
from ingest.gb28181.psmux import PsMuxer, crc32_mpeg
from tests.support.clips import Clip, make_clip, read_frame_code

SIZE = (640, 360)


def _clip(codec: str) -> Clip:
    return make_clip(codec, size=SIZE, seconds=8, label="gb")


def _mp4(clip: Clip, tmp: Path) -> Path:
    out = tmp / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-r", str(clip.fps), "-f", "h264",
                    "-i", str(clip.video), "-c", "copy", str(out)], check=True, timeout=60)
    return out


def gst_ps(clip: Clip, tmp: Path) -> bytes:
    """H.264 PS with a PSM, from GStreamer's mpegpsmux."""
    return subprocess.run(["gst-launch-1.0", "-q", "filesrc", f"location={_mp4(clip, tmp)}", "!", "qtdemux", "!",
                           "h264parse", "!", "mpegpsmux", "!", "fdsink", "fd=1"],
                          check=True, capture_output=True, timeout=60).stdout


def ffmpeg_ps(clip: Clip) -> bytes:
    """H.264 or H.265 PS without a PSM (MPEG-1 pack and PES syntax), from ffmpeg -f mpeg."""
    fmt = "hevc" if clip.codec == "h265" else "h264"
    return subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-r", str(clip.fps), "-f", fmt,
                           "-i", str(clip.video), "-c", "copy", "-f", "mpeg", "pipe:1"],
                          check=True, capture_output=True, timeout=60).stdout


def demux(data: bytes, chunks: int | None = 1300, seed: int = 1) -> tuple[list[VideoFrame], PsDemuxer]:
    """Feed ``data`` in ``chunks``-byte pieces (None: random 1..3000, as RTP payloads may fall)."""
    d = PsDemuxer()
    out: list = []
    rnd = random.Random(seed)
    i = 0
    while i < len(data):
        n = chunks or rnd.randint(1, 3000)
        out += d.feed(data[i : i + n])
        i += n
    out += d.flush()
    return [f for f in out if isinstance(f, VideoFrame)], d


def frame_codes(frames: list[VideoFrame]) -> list[int]:
    """Decode the frames (a fresh decoder per codec run) and read their frame codes."""
    codes: list[int] = []
    decoder = None
    codec = None
    for f in frames:
        if f.codec != codec:
            if decoder is not None:
                codes += [read_frame_code(p.to_ndarray(format="gray")) for p in decoder.decode(None)]
            codec = f.codec
            decoder = av.CodecContext.create("hevc" if codec == "h265" else "h264", "r")
        assert decoder is not None
        codes += [read_frame_code(p.to_ndarray(format="gray")) for p in decoder.decode(av.Packet(f.data))]
    if decoder is not None:
        codes += [read_frame_code(p.to_ndarray(format="gray")) for p in decoder.decode(None)]
    return codes


def check_clip(frames: list[VideoFrame], clip: Clip) -> None:
    assert len(frames) == clip.frames
    assert frame_codes(frames) == list(range(clip.frames))
    assert frames[0].keyframe and sum(f.keyframe for f in frames) == clip.frames // clip.gop
    steps = {b.pts_90k - a.pts_90k for a, b in zip(frames, frames[1:])}
    assert steps == {90000 // clip.fps}


def test_mpegpsmux_h264_with_psm(tmp_path: Path) -> None:
    clip = _clip("h264")
    frames, d = demux(gst_ps(clip, tmp_path))
    check_clip(frames, clip)
    assert d.stats.psms >= 1 and d.stream_types == {0xE0: 0x1B}
    assert d.stats.codec_detected is None  # the PSM said so; nothing was detected
    assert d.stats.resync_bytes == 0


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_ffmpeg_mpeg_without_psm_detects_codec(codec: str) -> None:
    clip = _clip(codec)
    frames, d = demux(ffmpeg_ps(clip), chunks=None)
    check_clip(frames, clip)
    assert d.stats.psms == 0 and d.stats.codec_detected == codec
    assert all(f.codec == codec for f in frames)


def test_chunking_does_not_change_the_frames(tmp_path: Path) -> None:
    data = gst_ps(_clip("h264"), tmp_path)
    a, _ = demux(data, chunks=None, seed=7)
    b, _ = demux(data, chunks=1)
    c, _ = demux(data, chunks=len(data))
    assert [(f.data, f.pts_90k) for f in a] == [(f.data, f.pts_90k) for f in b] == [(f.data, f.pts_90k) for f in c]


def _psm(stream_type: int, version: int) -> bytes:
    """A PSM written out by hand from 13818-1 §2.5.4.1 (not by our muxer): one stream, 0xE0."""
    body = bytes((0x80 | 0x20 | version, 0xFF, 0, 0, 0, 4, stream_type, 0xE0, 0, 0))
    head = b"\x00\x00\x01\xbc" + (len(body) + 4).to_bytes(2, "big") + body
    return head + crc32_mpeg(head).to_bytes(4, "big")


def test_psm_change_mid_stream_switches_codec(tmp_path: Path) -> None:
    h264, h265 = _clip("h264"), _clip("h265")
    first = gst_ps(h264, tmp_path)
    second = _psm(0x24, 1) + ffmpeg_ps(h265)  # the device switched to H.265 and says so
    frames, d = demux(first + second)
    assert d.stats.psm_changes == 1 and d.stats.codec_detected is None
    assert [f.codec for f in frames] == ["h264"] * h264.frames + ["h265"] * h265.frames
    assert frame_codes(frames) == list(range(h264.frames)) + list(range(h265.frames))


def test_psm_is_trusted_over_the_bytes() -> None:
    """With a PSM the codec is not guessed: an H.265 stream under a PSM saying H.265 is H.265 from
    its first byte, and a PSM naming a video type we cannot record is reported, not probed."""
    clip = _clip("h265")
    data = ffmpeg_ps(clip)
    frames, d = demux(_psm(0x24, 0) + data)
    check_clip(frames, clip)
    assert d.stats.codec_detected is None
    frames, d = demux(_psm(0x80, 0) + data)  # SVAC video
    assert frames == [] and d.stats.unsupported_video == 0x80


def test_loss_drops_until_the_next_keyframe(tmp_path: Path) -> None:
    clip = _clip("h264")
    data = gst_ps(clip, tmp_path)
    d = PsDemuxer()
    frames: list = []
    cut = len(data) // 3
    frames += d.feed(data[:cut])
    d.lost()
    frames += d.feed(data[cut + 5000 :]) + d.flush()
    codes = frame_codes(frames)
    # Everything before the loss, then a clean restart at a GOP boundary, with nothing corrupt.
    assert codes == sorted(codes) and codes[0] == 0
    jump = next(i for i, (a, b) in enumerate(zip(codes, codes[1:])) if b != a + 1)
    assert codes[jump + 1] % clip.gop == 0 and codes[-1] == clip.frames - 1
    assert d.stats.losses == 1 and d.stats.dropped_frames >= 1


def test_g711_from_the_psm_and_audio_without_psm_dropped() -> None:
    # One pack by hand: a PSM with 0xE0 H.264 and 0xC0 G.711A, then a G.711 PES with a PTS.
    body = bytes((0xE0, 0xFF, 0, 0, 0, 8, 0x1B, 0xE0, 0, 0, 0x90, 0xC0, 0, 0))
    head = b"\x00\x00\x01\xbc" + (len(body) + 4).to_bytes(2, "big") + body
    psm = head + crc32_mpeg(head).to_bytes(4, "big")
    samples = bytes(range(160))
    pes = b"\x00\x00\x01\xc0" + (3 + 5 + len(samples)).to_bytes(2, "big") + bytes((0x80, 0x80, 5))
    pes += bytes((0x21, 0x00, 0x01, 0x00, 0x01)) + samples  # PTS 0
    out = PsDemuxer().feed(psm + pes)
    assert out == [AudioFrame("pcm_alaw", samples, 0)]
    d = PsDemuxer()
    assert d.feed(pes) == [] and d.stats.dropped_audio == 1


def test_codec_detection_rules() -> None:
    assert detect_codec(0x67, 66) == "h264" and detect_codec(0x09, 0xF0) == "h264"
    assert detect_codec(0x40, 0x01) == "h265" and detect_codec(0x46, 0x01) == "h265"
    assert detect_codec(0x65, 0x88) is None  # a slice names no codec
    assert detect_codec(0x40, 0x00) is None  # temporal id 0 is not H.265


def test_garbage_between_packets_is_skipped(tmp_path: Path) -> None:
    clip = _clip("h264")
    data = gst_ps(clip, tmp_path)
    frames, d = demux(b"\x12\x34" * 500 + data)
    check_clip(frames, clip)
    assert d.stats.resync_bytes == 1000


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_our_muxer_is_read_by_ffmpeg(codec: str, tmp_path: Path) -> None:
    """The cascade's PS: FFmpeg's mpeg demuxer takes the codec from our PSM and decodes every frame."""
    clip = _clip(codec)
    frames, _ = demux(ffmpeg_ps(clip))
    mux = PsMuxer(codec)
    path = tmp_path / "out.ps"
    path.write_bytes(b"".join(mux.mux(f.access_unit().nals, f.pts_90k, f.keyframe) for f in frames))
    with av.open(str(path), format="mpeg") as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == ("hevc" if codec == "h265" else "h264")
        codes = [read_frame_code(p.to_ndarray(format="gray")) for p in c.decode(stream)]
    assert codes == list(range(clip.frames))
    again, d = demux(path.read_bytes())
    assert d.stats.psms == clip.frames // clip.gop and [f.access_unit().nals for f in again] == [f.access_unit().nals for f in frames]
    parsed = parse_psm(mux.mux(frames[0].access_unit().nals, 0, True).split(b"\x00\x00\x01\xbc")[1][2:])
    assert parsed == (True, 0, {0xE0: 0x1B if codec == "h264" else 0x24})


def test_a_start_code_split_across_pes_keeps_each_timestamp(tmp_path: Path) -> None:
    """Seen in ffmpeg's -f mpeg output of a long H.265 clip: a PES ends with one zero byte that the
    muxer counted with the frame before, and the next PES (with the next frame's PTS) starts with
    ``00 00 01``. The PTS must stay with the frame it was written for, not slip to the one after."""
    from ingest.gb28181.psmux import pack_header, pes_packets

    frames, _ = demux(gst_ps(_clip("h264"), tmp_path))
    a, b, c = frames[:3]
    payloads = [a.data + b"\x00", b.data[b.data.index(b"\x00\x00\x01"):], c.data]
    # The third frame's PES carries no PTS (ffmpeg writes one only where a frame starts first).
    ps = b"".join(pack_header(i * 3600) + pes_packets(0xE0, p, i * 3600 if i < 2 else None, None)[0]
                  for i, p in enumerate(payloads))
    got, d = demux(ps + pack_header(4 * 3600) + pes_packets(0xE0, frames[3].data, 3 * 3600, None)[0])
    assert [f.pts_90k for f in got] == [0, 3600, 7200, 10800]
    assert d.stats.stale_timestamps == 1
