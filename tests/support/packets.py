"""Encoded packets with controlled timestamps, for segmenter and spool tests.

A small libx264/libx265 encode in memory (no files, no RTSP), so tests can feed
the segmenter exactly the timestamp sequences cameras produce: jumps, repeats,
split slices, a missing first pts.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from ingest.recording.segmenter import parameter_sets

TIME_BASE = Fraction(1, 90000)  # what FFmpeg's RTSP demuxer gives for video


@dataclass
class Encoded:
    """An encoded clip, demuxed back so its streams can serve as muxing templates."""

    container: av.container.InputContainer
    video: av.video.stream.VideoStream
    audio: av.audio.stream.AudioStream | None
    video_packets: list[av.Packet]
    audio_packets: list[av.Packet]


def encode(codec: str = "h264", seconds: float = 6.0, fps: int = 25, gop: int = 50,
           size: tuple[int, int] = (320, 180), slices: int = 1, audio: bool = False,
           b_frames: int = 0) -> Encoded:
    """Encode a moving test pattern into MP4 in memory and demux it again.

    Video comes back with 90 kHz pts and AAC as raw frames with its config in
    extradata: what FFmpeg's RTSP demuxer gives. With ``b_frames`` the encoder sends
    that many B-frames between references (a b-pyramid from 2 on); packets keep the
    encoder's dts (an RTSP camera's have none: set them to None to test that).
    """
    buf = io.BytesIO()
    out = av.open(buf, "w", format="mp4", options={"video_track_timescale": "90000"})
    encoder = {"h264": "libx264", "hevc": "libx265"}[codec]
    vs = out.add_stream(encoder, rate=fps)
    vs.width, vs.height = size
    vs.pix_fmt = "yuv420p"
    vs.gop_size = gop
    vs.max_b_frames = b_frames
    if codec == "h264":
        vs.options = {
            "preset": "ultrafast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:slices={slices}:bframes={b_frames}:open-gop=0",
        }
    else:
        vs.options = {
            "preset": "ultrafast",
            "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={b_frames}:open-gop=0:log-level=error",
        }
    as_ = None
    if audio:
        as_ = out.add_stream("aac", rate=48000)
        as_.layout = "mono"
    n = int(seconds * fps)
    w, h = size
    for i in range(n):
        img = np.zeros((h, w, 3), dtype=np.uint8)
        img[:, :, 1] = (i * 7) % 255
        x = (i * 5) % max(1, w - 20)
        img[h // 3 : h // 3 + 20, x : x + 20] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode(None):
        out.mux(p)
    if as_ is not None:
        samples = 1024
        for k in range(int(seconds * 48000 / samples)):
            t = (np.arange(samples) + k * samples) / 48000
            pcm = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(1, -1)
            af = av.AudioFrame.from_ndarray(pcm, format="fltp", layout="mono")
            af.sample_rate = 48000
            af.pts = k * samples
            for p in as_.encode(af):
                out.mux(p)
        for p in as_.encode(None):
            out.mux(p)
    out.close()
    buf.seek(0)
    inp = av.open(buf, "r", format="mp4")
    v = inp.streams.video[0]
    a = inp.streams.audio[0] if inp.streams.audio else None
    # MP4 stores length-prefixed NAL units; an RTSP camera's depacketiser gives Annex B
    # with parameter sets in-band at keyframes, so convert to that.
    bsf = av.BitStreamFilterContext(f"{codec}_mp4toannexb", v)
    vp, ap = [], []
    for p in inp.demux():
        if p.size == 0:
            continue
        if p.stream is v:
            for q in bsf.filter(p):
                q.stream = v
                vp.append(q)
        else:
            ap.append(p)
    for q in bsf.filter(None):
        q.stream = v
        vp.append(q)
    # And, like an RTSP SDP's sprop-parameter-sets, the stream's extradata in Annex B.
    v.codec_context.extradata = parameter_sets(bytes(vp[0]), v.codec_context.name)
    return Encoded(inp, v, a, vp, ap)


def clone(packet: av.Packet, pts: int | None = None, data: bytes | None = None) -> av.Packet:
    """A copy of ``packet`` with new pts (and dts) and optionally new payload."""
    p = av.Packet(bytes(packet) if data is None else data)
    p.pts = packet.pts if pts is None else pts
    p.dts = p.pts
    p.time_base = packet.time_base
    p.is_keyframe = packet.is_keyframe
    p.stream = packet.stream
    return p


def split_nals(packet: av.Packet) -> list[av.Packet]:
    """One packet per Annex-B NAL unit, all with the packet's pts: how the RTSP
    demuxer delivers a multi-slice frame."""
    data = bytes(packet)
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        s = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append(s)
        i = data.find(b"\x00\x00\x01", i + 3)
    bounds = starts + [len(data)]
    return [clone(packet, data=data[a:b]) for a, b in zip(bounds, bounds[1:]) if b > a]
