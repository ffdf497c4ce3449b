"""storage.mp4.edit on hand-built fragments: the cases our own segments never show (an
explicit base data offset, a 32-bit tfdt, a trailer after the mdat, a track left alone).
Whole clips from real recordings are covered by tests/archive."""

from __future__ import annotations

import struct

import pytest

from storage.mp4.boxes import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    TFHD_BASE_DATA_OFFSET,
    TrunSample,
    box,
    find_box,
    full_box,
    iter_boxes,
    mfhd_box,
    read_tfdt,
    tfdt_box,
    tfhd_box,
    trun_box,
)
from storage.mp4.edit import FragmentError, TimeOverflow, TrackShift, check_fragment, patch_fragment
from storage.mp4.read import TrackInfo, parse_moof

TRACKS = {1: TrackInfo(1, "vide", 90000), 2: TrackInfo(2, "soun", 48000)}


def fragment(video_tfdt: bytes, video_tfhd: bytes) -> bytearray:
    video = [TrunSample(3600, 10, SYNC_SAMPLE_FLAGS, 3600)] + [TrunSample(3600, 10, NON_SYNC_SAMPLE_FLAGS)] * 4
    audio = [TrunSample(1024, 4, SYNC_SAMPLE_FLAGS)] * 3
    traf_v = box(b"traf", video_tfhd, video_tfdt, trun_box(video, 0))
    traf_a = box(b"traf", tfhd_box(2), tfdt_box(48000), trun_box(audio, 50))
    return bytearray(box(b"moof", mfhd_box(9), traf_v, traf_a) + box(b"mdat", bytes(62)))


def test_patch_renumbers_shifts_and_trims_only_the_tracks_asked() -> None:
    explicit = full_box(b"tfhd", 0, TFHD_BASE_DATA_OFFSET, struct.pack(">IQ", 1, 1000))
    data = fragment(tfdt_box(90000), explicit)
    size = len(data)
    check_fragment(data)
    # Video: one second earlier, keep what is presented before 2 frames + its 1-frame delay.
    patch_fragment(data, 3, -900, {1: TrackShift(-90000, 3 * 3600)})
    assert len(data) == size
    moof = next(iter_boxes(data))
    seq, runs = parse_moof(data, moof, TRACKS)
    assert seq == 3
    assert runs[1].base_decode_time == 0
    # Presentation times 3600, 3600, 7200, ...: those before 10800 are the first three.
    assert len(runs[1].samples) == 3
    assert runs[1].samples[0].data_offset == 100, "explicit base data offset moved by byte_shift"
    assert runs[2].base_decode_time == 48000 and len(runs[2].samples) == 3, "a track not in shifts is left alone"


def test_a_32_bit_tfdt_that_would_overflow_is_refused() -> None:
    data = fragment(full_box(b"tfdt", 0, 0, struct.pack(">I", 1 << 31)), tfhd_box(1))
    with pytest.raises(TimeOverflow):
        patch_fragment(data, 1, 0, {1: TrackShift(1 << 31)})
    ok = fragment(full_box(b"tfdt", 0, 0, struct.pack(">I", 5)), tfhd_box(1))
    patch_fragment(ok, 1, 0, {1: TrackShift(-10)})
    at = find_box(ok, "moof/traf/tfdt")
    assert at is not None and read_tfdt(ok, at).base_decode_time == 0, "clamped at 0"


def test_check_fragment_turns_a_trailer_into_padding_and_refuses_the_rest() -> None:
    data = fragment(tfdt_box(0), tfhd_box(1)) + box(b"mfra", bytes(16))
    check_fragment(data)
    assert [b.type for b in iter_boxes(data)] == ["moof", "mdat", "free"]
    with pytest.raises(FragmentError, match="not a moof"):
        check_fragment(bytearray(box(b"mdat", bytes(4))))
    with pytest.raises(FragmentError, match="exactly one"):
        check_fragment(fragment(tfdt_box(0), tfhd_box(1)) + bytes(3))
