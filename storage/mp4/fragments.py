"""The fMP4 segment writer of the native recorder: an init segment, then one ``moof``+``mdat`` a GOP.

The layout is the one PyAV's MP4 muxer writes for the PyAV recorder
(``frag_keyframe+empty_moov+default_base_moof``), so the index, keyframe tables,
``storage.mp4.read``, clips and exports need nothing new:

- ``ftyp`` + ``moov`` (``mvhd``, a ``trak`` per track with empty sample tables, ``mvex``/``trex``,
  and ``udta`` metadata naming the camera and the start, so two segments with identical
  pictures never share a hash);
- per GOP one ``moof`` (``mfhd``; per track a ``traf`` with ``tfhd`` default-base-is-moof,
  ``tfdt`` version 1, ``trun`` with durations, sizes, flags and signed composition offsets)
  and one ``mdat`` (the video samples, then the audio samples of the same span).

Video is ``avc1`` (``avcC``) or ``hvc1`` (``hvcC``: browsers and Apple players take H.265 in
MP4 only so tagged) at 90 kHz, samples as 4-byte length-prefixed NAL units; AAC is ``mp4a``
(``esds`` carrying the AudioSpecificConfig) at its sample rate. Decode times come from the
caller (``storage.mp4.decode_time``): RTP carries only presentation times.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

from storage.mp4.boxes import TrunSample, box, full_box, mfhd_box, sample_flags, tfdt_box, tfhd_box, trun_box
from storage.mp4.sps import rbsp

VIDEO_TIMESCALE = 90000
VIDEO_TRACK = 1
AUDIO_TRACK = 2
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@dataclass(frozen=True)
class VideoTrack:
    """``codec`` "h264" (parameter sets SPS, PPS) or "h265" (VPS, SPS, PPS), NAL units without start codes."""

    codec: str
    parameter_sets: tuple[bytes, ...]
    width: int
    height: int


@dataclass(frozen=True)
class AudioTrack:
    """AAC: the AudioSpecificConfig (RFC 3640 ``config``), sample rate and channel count."""

    config: bytes
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class VideoSample:
    """``data``: the sample's length-prefixed NAL units, as one ``bytes`` (``length_prefixed``) or
    as its pieces in order (``length_prefixed_parts``: the NAL units are not copied)."""

    data: bytes | tuple[bytes, ...]
    duration: int  # 90 kHz
    composition_offset: int  # PTS - DTS, 90 kHz
    keyframe: bool

    @property
    def size(self) -> int:
        data = self.data
        return len(data) if isinstance(data, bytes) else sum(map(len, data))


@dataclass(frozen=True)
class AudioSample:
    data: bytes  # one raw AAC frame
    duration: int  # in samples


_LEN32 = struct.Struct(">I")


def length_prefixed(nals: Sequence[bytes]) -> bytes:
    """An MP4 sample from NAL units: each with a 4-byte big-endian length."""
    return b"".join(length_prefixed_parts(nals))


def length_prefixed_parts(nals: Sequence[bytes]) -> tuple[bytes, ...]:
    """``length_prefixed`` as its pieces (length, NAL unit, length, ...), nothing copied."""
    pack = _LEN32.pack
    return tuple(p for n in nals if n for p in (pack(len(n)), n))


def avcc(sps: bytes, pps: bytes) -> bytes:
    return box(b"avcC", bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]), struct.pack(">H", len(sps)), sps,
               b"\x01", struct.pack(">H", len(pps)), pps)


def hvcc(vps: bytes, sps: bytes, pps: bytes) -> bytes:
    """ISO/IEC 14496-15 §8.3.3: the profile, tier and level come from the SPS's
    profile_tier_level; chroma 4:2:0 and 8 bits are declared (what cameras send: a decoder
    reads the real values from the SPS in the array below)."""
    r = rbsp(sps[2:])
    ptl = r[1:13]  # general_profile_space..general_level_idc, after the first SPS byte
    head = bytes([1]) + ptl + struct.pack(">HBBBBHB", 0xF000, 0xFC, 0xFD, 0xF8, 0xF8, 0, 0x0F)
    arrays = [bytes([0x80 | t]) + struct.pack(">HH", 1, len(n)) + n for t, n in ((32, vps), (33, sps), (34, pps))]
    return box(b"hvcC", head, bytes([len(arrays)]), *arrays)


def _visual_entry(kind: bytes, width: int, height: int, config: bytes) -> bytes:
    return box(kind, bytes(6), struct.pack(">H", 1), bytes(16),
               struct.pack(">HHIIIH", width, height, 0x00480000, 0x00480000, 0, 1), bytes(32),
               struct.pack(">Hh", 0x18, -1), config)


def _descriptor(tag: int, body: bytes) -> bytes:
    n = len(body)
    size = bytes([0x80 | (n >> 21) & 0x7F, 0x80 | (n >> 14) & 0x7F, 0x80 | (n >> 7) & 0x7F, n & 0x7F])
    return bytes([tag]) + size + body


def _mp4a(audio: AudioTrack) -> bytes:
    dec_specific = _descriptor(0x05, audio.config)
    dec_config = _descriptor(0x04, bytes([0x40, 0x15]) + bytes(3) + struct.pack(">II", 0, 0) + dec_specific)
    es = _descriptor(0x03, struct.pack(">HB", AUDIO_TRACK, 0) + dec_config + _descriptor(0x06, b"\x02"))
    esds = full_box(b"esds", 0, 0, es)
    rate = min(audio.sample_rate, 0xFFFF)
    return box(b"mp4a", bytes(6), struct.pack(">H", 1), bytes(8),
               struct.pack(">HHHHI", audio.channels, 16, 0, 0, rate << 16), esds)


def _trak(track_id: int, handler: bytes, timescale: int, entry: bytes, width: int = 0, height: int = 0,
          media_time: int = 0) -> bytes:
    stbl = box(b"stbl", full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry),
               full_box(b"stts", 0, 0, struct.pack(">I", 0)), full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
               full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)), full_box(b"stco", 0, 0, struct.pack(">I", 0)))
    media_header = full_box(b"vmhd", 0, 1, bytes(8)) if handler == b"vide" else full_box(b"smhd", 0, 0, bytes(4))
    minf = box(b"minf", media_header,
               box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1))), stbl)
    name = b"VideoHandler\x00" if handler == b"vide" else b"SoundHandler\x00"
    mdia = box(b"mdia", full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0)),
               full_box(b"hdlr", 0, 0, bytes(4), handler, bytes(12), name), minf)
    volume = 0 if handler == b"vide" else 0x0100
    tkhd = full_box(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, track_id, 0, 0), bytes(8),
                    struct.pack(">hhhH", 0, 0, 0, volume), _MATRIX, struct.pack(">II", width << 16, height << 16))
    if media_time > 0:
        # Presentation starts this late in media time: a B-frame track's decoder delay.
        edts = box(b"edts", full_box(b"elst", 0, 0, struct.pack(">IIiHH", 1, 0, media_time, 1, 0)))
        return box(b"trak", tkhd, edts, mdia)
    return box(b"trak", tkhd, mdia)


def _udta(metadata: dict[str, str]) -> bytes:
    keys = {"title": b"\xa9nam", "comment": b"\xa9cmt", "creation_time": b"\xa9day"}
    items = [box(keys[k], box(b"data", struct.pack(">II", 1, 0), v.encode("utf-8")))
             for k, v in metadata.items() if k in keys and v]
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), b"mdir", b"appl", bytes(9))
    return box(b"udta", full_box(b"meta", 0, 0, hdlr, box(b"ilst", *items)))


def init_segment(video: VideoTrack, audio: AudioTrack | None = None, metadata: dict[str, str] | None = None,
                 video_media_time: int = 0) -> bytes:
    """``ftyp`` + ``moov`` for the video track (1) and, if given, the AAC track (2).
    ``video_media_time``: the video's edit list starts presentation there (90 kHz ticks:
    the composition offset of a B-frame stream's first keyframe)."""
    if video.codec == "h264":
        sps, pps = video.parameter_sets
        entry = _visual_entry(b"avc1", video.width, video.height, avcc(sps, pps))
    elif video.codec == "h265":
        vps, sps, pps = video.parameter_sets
        entry = _visual_entry(b"hvc1", video.width, video.height, hvcc(vps, sps, pps))
    else:
        raise ValueError(f"no MP4 sample entry for video codec {video.codec!r}")
    traks = [_trak(VIDEO_TRACK, b"vide", VIDEO_TIMESCALE, entry, video.width, video.height, video_media_time)]
    trexs = [full_box(b"trex", 0, 0, struct.pack(">IIIII", VIDEO_TRACK, 1, 0, 0, 0))]
    if audio is not None:
        traks.append(_trak(AUDIO_TRACK, b"soun", audio.sample_rate, _mp4a(audio)))
        trexs.append(full_box(b"trex", 0, 0, struct.pack(">IIIII", AUDIO_TRACK, 1, 0, 0, 0)))
    next_id = AUDIO_TRACK + 1 if audio is not None else VIDEO_TRACK + 1
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x10000, 0x0100), bytes(10),
                    _MATRIX, bytes(24), struct.pack(">I", next_id))
    brand = b"hvc1" if video.codec == "h265" else b"avc1"
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso6" + brand + b"mp41")
    parts = [mvhd, *traks, box(b"mvex", *trexs)]
    if metadata:
        parts.append(_udta(metadata))
    return ftyp + box(b"moov", *parts)


def fragment(sequence: int, video_decode_time: int, video: Sequence[VideoSample],
             audio_decode_time: int = 0, audio: Sequence[AudioSample] = ()) -> bytes:
    """One ``moof`` + ``mdat``: the GOP's video samples (and the audio of the same span)."""
    return b"".join(fragment_parts(sequence, video_decode_time, video, audio_decode_time, audio))


def fragment_parts(sequence: int, video_decode_time: int, video: Sequence[VideoSample],
                   audio_decode_time: int = 0, audio: Sequence[AudioSample] = ()) -> list[bytes]:
    """``fragment`` as the pieces to write in order (``moof``, the ``mdat`` header, then the samples'
    own bytes): a GOP's megabyte is not copied into one buffer first (the recorder writes the
    pieces with one ``writev``)."""
    v_entries = [TrunSample(s.duration, s.size, sample_flags(s.keyframe), s.composition_offset) for s in video]
    a_entries = [TrunSample(s.duration, len(s.data), sample_flags(True)) for s in audio]
    video_bytes = sum(e.size for e in v_entries)

    def moof(mdat_payload: int) -> bytes:
        trafs = [box(b"traf", tfhd_box(VIDEO_TRACK), tfdt_box(video_decode_time),
                     trun_box(v_entries, mdat_payload))]
        if a_entries:
            trafs.append(box(b"traf", tfhd_box(AUDIO_TRACK), tfdt_box(audio_decode_time),
                             trun_box(a_entries, mdat_payload + video_bytes)))
        return box(b"moof", mfhd_box(sequence), *trafs)

    size = len(moof(0))
    mdat_size = 8 + video_bytes + sum(e.size for e in a_entries)
    parts = [moof(size + 8), _LEN32.pack(mdat_size) + b"mdat"]
    for s in video:
        if isinstance(s.data, bytes):
            parts.append(s.data)
        else:
            parts.extend(s.data)
    parts.extend(s.data for s in audio)
    return parts
