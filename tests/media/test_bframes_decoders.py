"""Decoders behind the live taps see a B-frame camera's pictures in presentation order,
and a snapshot is the keyframe just received, not one held back by the decoder's reordering."""

from __future__ import annotations

from ingest.media.packet_worker import StreamDecoder
from ingest.recording.access_units import DecodeTimestamper
from tests.support.packets import clone, encode


def _as_rtsp(enc):  # type: ignore[no-untyped-def]
    """The encoder's packets with presentation times only, then the DTS derived (as a session does)."""
    stamper = DecodeTimestamper(enc.video)
    out = []
    for p in enc.video_packets:
        q = clone(p)
        q.dts = None
        stamper.stamp(q)
        out.append(q)
    return out


def test_a_full_decoder_gives_frames_in_presentation_order() -> None:
    enc = encode(seconds=3.0, gop=25, b_frames=3)
    packets = _as_rtsp(enc)
    assert any(b.pts < a.pts for a, b in zip(packets, packets[1:])), "decode order differs from presentation"
    decoder = StreamDecoder("motion")
    times = [f.pts for p in packets for f in decoder.decode(p)]
    assert times == sorted(times) and len(times) >= len(packets) - 3
    assert all(b - a == 3600 for a, b in zip(times, times[1:]))


def test_a_keyframe_decoder_gives_each_keyframe_at_once() -> None:
    enc = encode(seconds=4.0, gop=25, b_frames=3)
    decoder = StreamDecoder("snapshots", keyframes_only=True)
    for p in _as_rtsp(enc):
        if p.is_keyframe:
            assert [f.pts for f in decoder.decode(p)] == [p.pts], "the keyframe just given, no GOP later"
