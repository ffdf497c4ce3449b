"""The one decode loop (``StreamDecoder``) and the one JPEG encoder (``ingest.media.jpeg``)
that snapshots, motion, transcode and the archive's snapshot.jpg share."""

from __future__ import annotations

import av
import cv2
import numpy as np

from ingest.media.jpeg import picture, resize_jpeg, scaled_size
from ingest.media.packet_worker import StreamDecoder
from tests.support.packets import encode


def _size(jpeg: bytes) -> tuple[int, int]:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return img.shape[1], img.shape[0]


def test_pictures_are_downscaled_keeping_the_aspect_and_never_upscaled() -> None:
    image = np.full((360, 640, 3), 90, np.uint8)
    small = picture(image, "cam-1", "main", 5, width=320)
    assert (small.width, small.height) == (320, 180) == _size(small.jpeg)
    for width in (640, 1280, None):
        same = picture(image, "cam-1", "main", 5, width=width)
        assert (same.width, same.height) == (640, 360) == _size(same.jpeg), width
    assert scaled_size(640, 360, 7680) == (640, 360)
    assert resize_jpeg(small.jpeg, 4096) == small.jpeg, "asked larger: the stored JPEG as it is"
    assert _size(resize_jpeg(small.jpeg, 160)) == (160, 90)


def test_stream_decoder_counts_bad_packets_and_restarts_on_a_new_source() -> None:
    first, second = encode(seconds=1, gop=10), encode(seconds=1, gop=10, size=(160, 90))
    sources: list[int] = []
    decoder = StreamDecoder("test", on_new_source=lambda: sources.append(decoder.unreadable))
    frames = [f for p in first.video_packets for f in decoder.decode(p)]
    assert sources == [0], "one decoder for one source"
    bad = av.Packet(b"\x00\x00\x00\x01\x65" + bytes(40))  # an IDR slice of zeros: FFmpeg refuses it
    bad.stream = first.video
    assert decoder.decode(bad) == [] and decoder.unreadable == 1
    frames += [f for p in second.video_packets for f in decoder.decode(p)]
    assert len(sources) == 2, "a new source stream gets a new decoder"
    assert {(f.width, f.height) for f in frames} >= {(320, 180), (160, 90)}


def test_keyframes_only_decodes_one_picture_per_gop() -> None:
    enc = encode(seconds=2, gop=10)
    decoder = StreamDecoder("test", keyframes_only=True)
    frames = [f for p in enc.video_packets for f in decoder.decode(p)]
    assert len(frames) == sum(1 for p in enc.video_packets if p.is_keyframe) == 5
