"""RTP depacketisers for video: H.264 (RFC 6184) and H.265 (RFC 7798) into access units.

Packets go in sequence order (from TCP, or from :class:`~ingest.rtp.reorder.ReorderBuffer`
on UDP); whole :class:`~ingest.access_unit.AccessUnit` objects come out. An access unit
ends at the RTP marker bit, or when the timestamp changes (a camera that never sets the
marker, or whose marked packet was lost). Slices of one picture share a timestamp, so a
multi-slice camera gives one access unit per picture, never one per slice.

Loss: the depacketiser checks sequence continuity itself. A gap breaks the access unit
in progress and the one the next packet belongs to; both are dropped, ``errors`` counts
the gap once, and output resumes at the next keyframe (a P-frame after a lost picture
would decode into garbage until then). Output also starts at a keyframe.

Timestamps: the 32-bit RTP timestamp is unwrapped into a 64-bit 90 kHz pts that keeps
counting across the wrap (a camera running for 13 h 15 min wraps once).

Parameter sets: from the SDP (``sprop-parameter-sets``, ``sprop-vps/sps/pps``) first,
then in-band ones as they come; :attr:`VideoDepacketizer.parameter_sets` is the latest
full set, and :attr:`VideoDepacketizer.parameter_sets_changed` tells the first keyframe
after they changed (a resolution change: the segment must be cut there).

Not supported (each counted in ``unsupported`` and dropped): H.264 STAP-B, MTAP and FU-B
(packetization-mode 2, interleaved; no camera we know of sends it), H.265 PACI and DONL
(sprop-max-don-diff > 0).
"""

from __future__ import annotations

import base64
import binascii
from typing import Callable

from ingest.access_unit import AccessUnit
from ingest.rtp.packet import RTP_FIXED_HEADER, RTP_HEADER_SIZE, RtpError, RtpPacket, parse_rtp, ts_delta

H264_STAP_A = 24
H264_FU_A = 28
H264_IDR = 5
H264_SPS = 7
H264_PPS = 8

H265_AP = 48
H265_FU = 49
H265_VPS = 32
H265_SPS = 33
H265_PPS = 34
H265_IRAP = range(16, 24)  # BLA, IDR, CRA and reserved IRAP types: a random access point


class TimestampUnwrapper:
    """32-bit RTP timestamps in, a monotone-ish 64-bit count out (wrap-around followed)."""

    def __init__(self) -> None:
        self._last: int | None = None
        self._ext = 0

    def __call__(self, ts: int) -> int:
        if self._last is None:
            self._ext = ts
        else:
            self._ext += ts_delta(self._last, ts)
        self._last = ts
        return self._ext


class VideoDepacketizer:
    """The codec-independent part: access unit cutting, loss handling, keyframe gating."""

    codec = ""

    def __init__(self) -> None:
        self._nals: list[bytes] = []
        self._ts: int | None = None
        self._broken = False
        self._fu: list[bytes] | None = None  # the parts of a fragmented NAL unit so far
        self._next_seq: int | None = None
        self._need_keyframe = True
        self._unwrap = TimestampUnwrapper()
        self._params: dict[int, bytes] = {}
        self._params_emitted: tuple[bytes, ...] = ()
        self.parameter_sets_changed = False
        # RTP timestamp -> the camera's wall clock (UNIX s), once an RTCP sender report has come.
        self.wallclock: Callable[[int], float | None] | None = None
        self.ssrc: int | None = None  # of the last packet
        self.packets = 0
        self.errors = 0  # sequence gaps (lost packets) and malformed payloads
        self.lost_packets = 0
        self.dropped_frames = 0  # access units not given out: broken, or waiting for a keyframe
        self.unsupported = 0
        self.frames = 0

    # -- subclass hooks ---------------------------------------------------------------
    def _unpack(self, data: bytes, start: int, end: int) -> None:  # pragma: no cover - abstract
        """The payload ``data[start:end]`` (not empty)."""
        raise NotImplementedError

    def _is_keyframe(self, nals: list[bytes]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _param_type(self, nal: bytes) -> int | None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def parameter_sets(self) -> tuple[bytes, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last packet taken (0 before the first)."""
        return ((self._next_seq or 0) - 1) & 0xFFFF

    # -- the packet path --------------------------------------------------------------
    def push(self, packet: RtpPacket) -> AccessUnit | None:
        """Take the next packet in sequence order; return the access unit it completes, if any."""
        self.ssrc = packet.ssrc
        p = packet.payload
        return self._push(packet.sequence, packet.timestamp, packet.marker, p, 0, len(p))

    def push_rtp(self, data: bytes, start: int = 0, end: int | None = None) -> AccessUnit | None:
        """The hot path: the raw RTP packet ``data[start:end]`` (a datagram, or an interleaved frame
        still in the read buffer), in sequence order; return the access unit it completes, if any.

        The usual header (version 2, no padding, extension or CSRCs) is read here with one
        ``struct`` call and the payload is sliced straight out of ``data``: no packet object,
        no intermediate copy. Anything else goes through :func:`parse_rtp`. Raises
        :class:`RtpError` for a packet that is not RTP, as ``parse_rtp`` does.
        """
        if end is None:
            end = len(data)
        if end - start < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet of {end - start} B is shorter than the 12 B header")
        b0, b1, seq, ts, ssrc = RTP_FIXED_HEADER.unpack_from(data, start)
        if b0 != 0x80:
            return self.push(parse_rtp(data[start:end]))
        self.ssrc = ssrc
        return self._push(seq, ts, b1 & 0x80, data, start + RTP_HEADER_SIZE, end)

    def _push(self, seq: int, ts: int, marker: int, data: bytes, start: int, end: int) -> AccessUnit | None:
        """The one rule for every packet: the payload is ``data[start:end]``."""
        self.packets += 1
        out: AccessUnit | None = None
        if self._next_seq is not None and seq != self._next_seq:
            # Packets were lost: the unit in progress lost its tail, and the unit this packet
            # belongs to may have lost its head. Neither can be rebuilt; wait for a keyframe.
            self.errors += 1
            self.lost_packets += (seq - self._next_seq) & 0xFFFF
            self._need_keyframe = True
            if self._nals or self._fu is not None:
                self.dropped_frames += 1
            self._nals = []
            self._fu = None
            self._broken = True
            self._ts = ts
        elif self._ts is None:
            self._ts = ts
        elif ts != self._ts:
            out = self._finish()  # a new timestamp: the previous unit ended without a marker
            self._ts = ts
        self._next_seq = (seq + 1) & 0xFFFF
        try:
            if start >= end:
                raise ValueError("empty RTP payload")
            self._unpack(data, start, end)
        except (IndexError, ValueError):
            self.errors += 1
            self._broken = True
            self._fu = None
            self._need_keyframe = True
        if marker:
            done = self._finish()
            return done if done is not None else out
        return out

    def flush(self) -> AccessUnit | None:
        """End of stream: the unit in progress, if it is whole."""
        return self._finish()

    def _finish(self) -> AccessUnit | None:
        nals, ts, broken = self._nals, self._ts, self._broken
        self._nals = []
        self._fu = None
        self._broken = False
        self._ts = None
        if broken and ts is not None:
            self.dropped_frames += 1  # some of its packets came (perhaps only FU middles): a picture lost
            return None
        if not nals or ts is None:
            return None
        key = self._is_keyframe(nals)
        if self._need_keyframe and not key:
            self.dropped_frames += 1
            return None
        if key:
            self._need_keyframe = False
            params = self.parameter_sets
            self.parameter_sets_changed = bool(self._params_emitted) and params != self._params_emitted
            self._params_emitted = params
        else:
            self.parameter_sets_changed = False
        self.frames += 1
        pts = self._unwrap(ts)
        return AccessUnit(tuple(nals), pts, key, self.wallclock(ts) if self.wallclock is not None else None)

    def _add_nal(self, nal: bytes) -> None:
        if not nal:
            return
        t = self._param_type(nal)
        if t is not None:
            self._params[t] = nal
        self._nals.append(nal)

    def _fu_part(self, first: int, last: int, header: bytes | None, body: bytes) -> None:
        """One fragment (FU-A, H.265 FU): the parts are kept and joined once, at the last one.
        ``header`` (the NAL unit header rebuilt from the FU headers) is read at the first only."""
        if first:
            assert header is not None
            self._fu = [header, body]
        elif self._fu is None:
            # A middle or end without its start: the start was lost (already counted as a gap),
            # or the camera is broken. Either way this unit cannot be rebuilt.
            self._broken = True
            return
        else:
            self._fu.append(body)
        if last:
            nal = b"".join(self._fu)
            self._fu = None
            self._add_nal(nal)

    def _aggregated(self, data: bytes, pos: int, end: int) -> None:
        """An aggregation packet (H.264 STAP-A, H.265 AP): 16-bit size, NAL unit, repeated."""
        while pos + 2 <= end:
            size = (data[pos] << 8) | data[pos + 1]
            pos += 2
            if pos + size > end:
                raise ValueError("an aggregated NAL unit runs past the packet")
            self._add_nal(data[pos:pos + size])
            pos += size

    def load_parameter_sets(self, nals: list[bytes]) -> None:
        """Parameter sets from the SDP: known before the first packet."""
        for nal in nals:
            t = self._param_type(nal) if nal else None
            if t is not None:
                self._params[t] = nal


class H264Depacketizer(VideoDepacketizer):
    """RFC 6184, packetization-mode 0 and 1: single NAL units, STAP-A and FU-A."""

    codec = "h264"

    def __init__(self, sprop_parameter_sets: str | None = None) -> None:
        super().__init__()
        if sprop_parameter_sets:
            self.load_parameter_sets(decode_sprop(sprop_parameter_sets))

    def _unpack(self, data: bytes, start: int, end: int) -> None:
        b = data[start]
        t = b & 0x1F
        if t == H264_FU_A:  # most packets of a 1080p stream
            if end - start < 2:
                raise ValueError("FU-A payload shorter than its header")
            fu = data[start + 1]
            first = fu & 0x80  # the NAL unit header is rebuilt at the first fragment only
            self._fu_part(first, fu & 0x40, bytes(((b & 0xE0) | (fu & 0x1F),)) if first else None,
                          data[start + 2:end])
        elif t < H264_STAP_A:
            if t:
                self._add_nal(data[start:end])
        elif t == H264_STAP_A:
            self._aggregated(data, start + 1, end)
        else:
            self.unsupported += 1
            self._broken = True

    def _is_keyframe(self, nals: list[bytes]) -> bool:
        return any(n[0] & 0x1F == H264_IDR for n in nals)

    def _param_type(self, nal: bytes) -> int | None:
        t = nal[0] & 0x1F
        return t if t in (H264_SPS, H264_PPS) else None

    @property
    def parameter_sets(self) -> tuple[bytes, ...]:
        sps, pps = self._params.get(H264_SPS), self._params.get(H264_PPS)
        return (sps, pps) if sps and pps else ()


class H265Depacketizer(VideoDepacketizer):
    """RFC 7798 without DONL: single NAL units, aggregation packets (AP) and fragmentation units (FU)."""

    codec = "h265"

    def __init__(self, sprop_vps: str | None = None, sprop_sps: str | None = None,
                 sprop_pps: str | None = None) -> None:
        super().__init__()
        self.load_parameter_sets([n for s in (sprop_vps, sprop_sps, sprop_pps) if s for n in decode_sprop(s)])

    def _unpack(self, data: bytes, start: int, end: int) -> None:
        if end - start < 3:
            raise ValueError("H.265 payload shorter than its header")
        b = data[start]
        t = (b >> 1) & 0x3F
        if t == H265_FU:
            fu = data[start + 2]
            first = fu & 0x80
            header = bytes(((b & 0x81) | ((fu & 0x3F) << 1), data[start + 1])) if first else None
            self._fu_part(first, fu & 0x40, header, data[start + 3:end])
        elif t < H265_AP:
            self._add_nal(data[start:end])
        elif t == H265_AP:
            self._aggregated(data, start + 2, end)
        else:
            self.unsupported += 1
            self._broken = True

    def _is_keyframe(self, nals: list[bytes]) -> bool:
        return any((n[0] >> 1) & 0x3F in H265_IRAP for n in nals)

    def _param_type(self, nal: bytes) -> int | None:
        t = (nal[0] >> 1) & 0x3F
        return t if t in (H265_VPS, H265_SPS, H265_PPS) else None

    @property
    def parameter_sets(self) -> tuple[bytes, ...]:
        found = tuple(self._params.get(t) for t in (H265_VPS, H265_SPS, H265_PPS))
        return found if all(found) else ()  # type: ignore[return-value]


def decode_sprop(value: str) -> list[bytes]:
    """Comma-separated base64 parameter sets of an SDP ``fmtp`` line; bad entries are skipped."""
    out: list[bytes] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(base64.b64decode(part + "=" * (-len(part) % 4)))
        except (binascii.Error, ValueError):
            continue
    return [n for n in out if n]
