"""A minimal fragmented-MP4 writer for live H.264 (ISO 14496-12/-15), for MSE players.

Bytes only, no muxer state beyond a sequence number: ``init_segment`` once per set of
codec parameters, then ``fragment`` per group of access units. Each fragment carries its
own decode time (``tfdt``), so a viewer can join at any keyframe fragment, and a
fragment can be written the moment its frames arrive (no waiting for the next frame to
learn a duration: the duration is the previous frame's, and ``tfdt`` corrects any error).
Storage's parser (``storage.mp4.read``) reads what this writes; the tests check that and
that PyAV decodes it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from storage.mp4.boxes import TrunSample, box, full_box, mfhd_box, sample_flags, tfdt_box, tfhd_box, trun_box
from storage.mp4.nal import NAL_AUD

TIMESCALE = 90000
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def avc_codec_string(sps: bytes) -> str:
    """The RFC 6381 codec string MSE's ``addSourceBuffer`` wants, e.g. ``avc1.64001f``."""
    return f"avc1.{sps[1:4].hex()}"


def init_segment(sps: bytes, pps: bytes, width: int, height: int) -> bytes:
    """ftyp + moov for one H.264 video track (track 1, 90 kHz)."""
    avcc = box(b"avcC", bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),
               struct.pack(">H", len(sps)), sps, b"\x01", struct.pack(">H", len(pps)), pps)
    avc1 = box(
        b"avc1",
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16),  # pre_defined, reserved, pre_defined[3]
        struct.pack(">HHIIIH", width, height, 0x00480000, 0x00480000, 0, 1),
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x18, -1),
        avcc,
    )
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = box(
        b"minf",
        full_box(b"vmhd", 0, 1, bytes(8)),
        box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1))),
        stbl,
    )
    mdia = box(
        b"mdia",
        full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, 0, 0x55C4, 0)),  # language "und"
        full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"sharpeyes live\x00"),
        minf,
    )
    tkhd = full_box(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, 0), bytes(8),
                    struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX, struct.pack(">II", width << 16, height << 16))
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x10000, 0x0100), bytes(10),
                    _MATRIX, bytes(24), struct.pack(">I", 2))
    mvex = box(b"mvex", full_box(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0)))
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso6avc1mp41")
    return ftyp + box(b"moov", mvhd, box(b"trak", tkhd, mdia), mvex)


@dataclass(frozen=True)
class Sample:
    """One access unit for a fragment: its NAL units, decode time and duration (90 kHz), and
    its composition offset (pts - dts, never negative: B-frames as they came)."""

    nals: tuple[bytes, ...]
    decode_time: int
    duration: int
    keyframe: bool
    composition_offset: int = 0


def fragment(sequence: int, samples: list[Sample]) -> bytes:
    """moof + mdat for consecutive samples; the first one's decode time goes in tfdt."""
    datas = [b"".join(struct.pack(">I", len(n)) + n for n in s.nals if n and n[0] & 0x1F != NAL_AUD) for s in samples]
    entries = [TrunSample(s.duration, len(d), sample_flags(s.keyframe), s.composition_offset)
               for s, d in zip(samples, datas)]

    def moof(data_offset: int) -> bytes:
        traf = box(b"traf", tfhd_box(1), tfdt_box(samples[0].decode_time), trun_box(entries, data_offset, version=0))
        return box(b"moof", mfhd_box(sequence), traf)

    size = len(moof(0))
    return moof(size + 8) + box(b"mdat", *datas)
