"""The fMP4 writer: storage's parser reads it and PyAV decodes every frame."""

from __future__ import annotations

import io

import av

from storage.mp4.nal import split_annexb
from ingest.live.hub import parameter_sets_from_extradata
from storage.mp4.read import init_segment_size, parse_init, scan_fragments
from storage.mp4.live import Sample, avc_codec_string, fragment, init_segment
from tests.support.packets import encode


def test_init_and_per_frame_fragments_parse_and_decode():
    enc = encode(seconds=2, gop=25, size=(320, 180))
    sps, pps = parameter_sets_from_extradata("h264", enc.video.codec_context.extradata)
    data = init_segment(sps, pps, 320, 180)
    for i, p in enumerate(enc.video_packets):
        data += fragment(i + 1, [Sample(tuple(split_annexb(bytes(p))), p.pts, 3600, p.is_keyframe)])
    assert avc_codec_string(sps).startswith("avc1.")
    isz = init_segment_size(data)
    tracks = parse_init(data[:isz])
    assert [t.handler for t in tracks.values()] == ["vide"]
    frags = scan_fragments(data, tracks, isz)
    assert len(frags) == len(enc.video_packets)
    with av.open(io.BytesIO(data), format="mp4") as c:
        frames = list(c.decode(video=0))
    assert len(frames) == len(enc.video_packets)
    assert (frames[0].width, frames[0].height) == (320, 180)
    assert frames[-1].pts == enc.video_packets[-1].pts
