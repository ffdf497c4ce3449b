"""``AccessUnit``: one coded picture as every ingest path hands it on (hub, viewers, restream)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ingest.rtp.h264 import RTP_MAX_PAYLOAD, fu_a_payloads
from storage.mp4.nal import NAL_AUD, NAL_IDR, nal_type, split_annexb


@dataclass(frozen=True, eq=False)
class AccessUnit:
    """One coded picture: its NAL units (no start codes), 90 kHz pts and whether it is a keyframe.

    A keyframe access unit must be decodable on its own: it carries SPS and PPS in-band
    or the source's ``parameter_sets()`` describe it. ``wallclock`` is when the picture
    was captured (UNIX seconds) if the source knows; RTCP sender reports use it.
    ``dts_90k`` is its decode time where it differs from ``pts_90k``: a camera that sends
    B-frames sends pictures in decode order, and their pts go back and forth.
    """

    nals: tuple[bytes, ...]
    pts_90k: int
    keyframe: bool
    wallclock: float | None = None
    dts_90k: int | None = None

    @property
    def decode_90k(self) -> int:
        """The decode time: ``dts_90k``, or the pts for a stream without reordering."""
        return self.pts_90k if self.dts_90k is None else self.dts_90k

    @classmethod
    def from_annexb(
        cls, data: bytes, pts_90k: int, keyframe: bool | None = None, wallclock: float | None = None
    ) -> AccessUnit:
        """Build an access unit from Annex-B bytes; ``keyframe`` defaults to "has an IDR slice"."""
        nals = tuple(split_annexb(data))
        if keyframe is None:
            keyframe = any(nal_type(n) == NAL_IDR for n in nals)
        return cls(nals, pts_90k, keyframe, wallclock)

    @cached_property
    def rtp_payloads(self) -> tuple[bytes, ...]:
        """The RFC 6184 payloads of this access unit, computed once for every subscriber.

        The last payload is the one that carries the RTP marker bit. (A cached property
        writes to the instance ``__dict__``, which a frozen dataclass still allows.)
        """
        out: list[bytes] = []
        for nal in self.nals:
            if nal_type(nal) == NAL_AUD:
                continue  # RFC 6184 §6.2 suggests dropping AUDs; the marker bit replaces them
            out.extend(fu_a_payloads(nal) if len(nal) > RTP_MAX_PAYLOAD else (nal,))
        return tuple(out)
