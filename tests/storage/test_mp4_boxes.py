"""storage.mp4.boxes: the one tfhd/trun reader and writer, checked against FFmpeg's own muxer
and hand-built boxes (each optional field, signed composition offsets, trimming in place)."""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import av
import pytest

from storage.mp4.boxes import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    TFHD_BASE_DATA_OFFSET,
    TFHD_DEFAULT_BASE_IS_MOOF,
    TFHD_DEFAULT_SAMPLE_DURATION,
    TFHD_DEFAULT_SAMPLE_FLAGS,
    TFHD_DEFAULT_SAMPLE_SIZE,
    TFHD_SAMPLE_DESCRIPTION_INDEX,
    TRUN_DATA_OFFSET,
    TRUN_FIRST_SAMPLE_FLAGS,
    TRUN_SAMPLE_COMPOSITION_TIME_OFFSET,
    TRUN_SAMPLE_DURATION,
    TRUN_SAMPLE_FLAGS,
    TRUN_SAMPLE_SIZE,
    TrunSample,
    box,
    find_box,
    find_boxes,
    full_box,
    is_sync,
    iter_boxes,
    read_tfdt,
    read_tfhd,
    read_trun,
    sample_flags,
    tfdt_box,
    tfhd_box,
    trun_box,
)


def _one(data: bytes | bytearray, kind: str):  # type: ignore[no-untyped-def]
    found = find_box(data, kind)
    assert found is not None
    return found


def test_box_and_full_box_headers() -> None:
    assert box(b"free", b"ab", b"c") == b"\x00\x00\x00\x0bfreeabc"
    assert full_box(b"mfhd", 1, 0x020304, b"\x00\x00\x00\x07") == (
        b"\x00\x00\x00\x10mfhd" + b"\x01\x02\x03\x04" + b"\x00\x00\x00\x07")
    nested = box(b"moof", box(b"traf", tfhd_box(3)), box(b"traf", tfhd_box(4)))
    moof = _one(nested, "moof")
    trafs = find_boxes(nested, "traf", moof.payload_offset, moof.end)
    assert [read_tfhd(nested, find_box(nested, "tfhd", t.payload_offset, t.end)).track_id  # type: ignore[arg-type]
            for t in trafs] == [3, 4]


def test_sample_flags_name_sync_and_non_sync() -> None:
    assert sample_flags(True) == SYNC_SAMPLE_FLAGS == 0x02000000
    assert sample_flags(False) == NON_SYNC_SAMPLE_FLAGS == 0x01010000
    assert is_sync(SYNC_SAMPLE_FLAGS) and not is_sync(NON_SYNC_SAMPLE_FLAGS)
    assert is_sync(0)  # no flags at all: nothing says it is non-sync


def test_tfhd_reads_every_optional_field_in_order() -> None:
    flags = (TFHD_BASE_DATA_OFFSET | TFHD_SAMPLE_DESCRIPTION_INDEX | TFHD_DEFAULT_SAMPLE_DURATION
             | TFHD_DEFAULT_SAMPLE_SIZE | TFHD_DEFAULT_SAMPLE_FLAGS)
    data = full_box(b"tfhd", 0, flags, struct.pack(">IQIIII", 9, 1 << 40, 2, 3600, 1234, NON_SYNC_SAMPLE_FLAGS))
    tfhd = read_tfhd(data, _one(data, "tfhd"))
    assert (tfhd.track_id, tfhd.base_data_offset, tfhd.sample_description_index) == (9, 1 << 40, 2)
    assert (tfhd.default_sample_duration, tfhd.default_sample_size, tfhd.default_sample_flags) == (
        3600, 1234, NON_SYNC_SAMPLE_FLAGS)
    assert tfhd.base_data_offset_at == 16
    only_size = full_box(b"tfhd", 0, TFHD_DEFAULT_SAMPLE_SIZE | TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">II", 1, 77))
    t2 = read_tfhd(only_size, _one(only_size, "tfhd"))
    assert (t2.default_sample_size, t2.default_sample_duration, t2.base_data_offset) == (77, None, None)


def test_trun_round_trips_signed_composition_offsets_in_version_1() -> None:
    samples = [TrunSample(3000, 100, SYNC_SAMPLE_FLAGS, 6000), TrunSample(3000, 20, NON_SYNC_SAMPLE_FLAGS, -3000),
               TrunSample(3000, 30, NON_SYNC_SAMPLE_FLAGS, 0)]
    data = trun_box(samples, data_offset=-8)
    trun = read_trun(data, _one(data, "trun"))
    assert trun.version == 1
    assert trun.flags == (TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS
                          | TRUN_SAMPLE_COMPOSITION_TIME_OFFSET)
    assert trun.data_offset == -8
    assert [(e.duration, e.size, e.flags, e.composition_offset) for e in trun.entries] == [
        (s.duration, s.size, s.flags, s.composition_offset) for s in samples]
    no_cto = trun_box([TrunSample(1, 2, 3)], 5, version=0)
    plain = read_trun(no_cto, _one(no_cto, "trun"))
    assert plain.flags & TRUN_SAMPLE_COMPOSITION_TIME_OFFSET == 0
    assert plain.entries[0].composition_offset == 0 and plain.entry_size == 12


def test_trun_first_sample_flags_and_defaults() -> None:
    flags = TRUN_FIRST_SAMPLE_FLAGS | TRUN_SAMPLE_SIZE
    data = full_box(b"trun", 0, flags, struct.pack(">IIII", 2, SYNC_SAMPLE_FLAGS, 10, 11))
    trun = read_trun(data, _one(data, "trun"))
    assert trun.data_offset is None and trun.first_sample_flags == SYNC_SAMPLE_FLAGS
    assert [e.size for e in trun.entries] == [10, 11] and trun.entries[0].duration is None
    assert trun.sample_flags(0, NON_SYNC_SAMPLE_FLAGS) == SYNC_SAMPLE_FLAGS
    assert trun.sample_flags(1, NON_SYNC_SAMPLE_FLAGS) == NON_SYNC_SAMPLE_FLAGS


def test_trun_trim_is_size_neutral() -> None:
    samples = [TrunSample(10, 1, 0, i) for i in range(1, 6)]
    traf = bytearray(box(b"traf", tfhd_box(1), trun_box(samples, 0)))
    size = len(traf)
    at = find_box(traf, "traf/trun")
    assert at is not None
    read_trun(traf, at).trim(traf, 2)
    assert len(traf) == size
    traf_at = _one(traf, "traf")
    kinds = [b.type for b in iter_boxes(traf, traf_at.payload_offset, traf_at.end)]
    assert kinds == ["tfhd", "trun", "free"]
    trimmed = read_trun(traf, find_box(traf, "traf/trun"))  # type: ignore[arg-type]
    assert [e.composition_offset for e in trimmed.entries] == [1, 2]


@pytest.mark.parametrize("kind,payload", [
    (b"trun", struct.pack(">II", TRUN_SAMPLE_SIZE, 3) + b"\x00" * 8),  # 3 samples, room for 2
    (b"trun", struct.pack(">II", TRUN_DATA_OFFSET | TRUN_FIRST_SAMPLE_FLAGS, 0) + b"\x00" * 4),  # no first flags
    (b"tfhd", struct.pack(">II", TFHD_BASE_DATA_OFFSET, 1) + b"\x00" * 4),  # 8-byte offset cut short
    (b"tfdt", b"\x01\x00\x00\x00" + b"\x00" * 4),  # version 1 wants 8 bytes of time
])
def test_short_boxes_are_refused_with_value_error(kind: bytes, payload: bytes) -> None:
    data = box(kind, payload)
    reader = {b"trun": read_trun, b"tfhd": read_tfhd, b"tfdt": read_tfdt}[kind]
    with pytest.raises(ValueError, match="too short|room for fewer"):
        reader(data, _one(data, kind.decode()))


def test_reader_agrees_with_ffmpegs_fragmented_mp4() -> None:
    """FFmpeg's mov muxer (an independent writer) with B-frames: negative composition
    offsets in a version 1 trun, read back as the decoder's own pts - dts."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4",
                 options={"movflags": "frag_keyframe+empty_moov+default_base_moof+negative_cts_offsets"}) as out:
        s = out.add_stream("libx264", rate=25, options={"bf": "2", "g": "10", "preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        frames = []
        for i in range(20):
            f = av.VideoFrame(64, 64, "yuv420p")
            for plane in f.planes:
                plane.update(bytes([(i * 13) % 256]) * plane.buffer_size)
            f.pts, f.time_base = i, Fraction(1, 25)
            frames.append(f)
        for f in frames:
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    data = buf.getvalue()
    ctos, keys = [], []
    for moof in find_boxes(data, "moof"):
        trun = read_trun(data, find_box(data, "traf/trun", moof.payload_offset, moof.end))  # type: ignore[arg-type]
        tfhd = read_tfhd(data, find_box(data, "traf/tfhd", moof.payload_offset, moof.end))  # type: ignore[arg-type]
        ctos += [e.composition_offset for e in trun.entries]
        keys += [is_sync(trun.sample_flags(i, tfhd.default_sample_flags or 0)) for i in range(len(trun.entries))]
    with av.open(io.BytesIO(data), "r") as c:
        packets = [p for p in c.demux(video=0) if p.size]
    delays = [p.pts - p.dts for p in packets if p.pts is not None and p.dts is not None]
    assert len(ctos) == len(delays) == 20
    # FFmpeg's demuxer shifts every pts by the first sample's delay (the edit list's start).
    assert ctos == [d - delays[0] for d in delays]
    assert any(c < 0 for c in ctos), "B-frames give negative offsets in a version 1 trun"
    assert keys == [p.is_keyframe for p in packets]
    tfdt = read_tfdt(data, find_box(data, "moof/traf/tfdt"))  # type: ignore[arg-type]
    assert tfdt.version == 1 and tfdt_box(tfdt.base_decode_time)[8] == 1
