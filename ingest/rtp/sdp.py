"""SDP (RFC 4566) as RTSP cameras send it in a DESCRIBE answer: just what a receiver needs.

Per media section: the type, payload type, ``rtpmap`` (encoding, clock rate, channels),
``fmtp`` parameters and ``control``; and the session-level ``control`` (aggregate). Lines
that do not parse are skipped: cameras write odd SDP, and one bad attribute must not
stop a recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MediaDescription:
    """One ``m=`` section."""

    media: str  # "video", "audio", "application"
    payload_type: int | None
    encoding: str = ""  # upper case, e.g. "H264", "H265", "MPEG4-GENERIC", "PCMA"
    clock_rate: int = 0
    channels: int = 1
    fmtp: dict[str, str] = field(default_factory=dict)  # keys lower case
    control: str = ""


@dataclass
class SessionDescription:
    control: str = ""
    media: list[MediaDescription] = field(default_factory=list)


def parse_sdp(text: str) -> SessionDescription:
    """Parse an SDP body. The first payload type of a media line is the one described."""
    sdp = SessionDescription()
    current: MediaDescription | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            pt = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else None
            current = MediaDescription(parts[0].lower() if parts else "", pt)
            sdp.media.append(current)
        elif kind == "a":
            name, _, rest = value.partition(":")
            name = name.lower()
            if name == "control":
                if current is None:
                    sdp.control = rest.strip()
                else:
                    current.control = rest.strip()
            elif current is not None and name in ("rtpmap", "fmtp"):
                pt_text, _, params = rest.strip().partition(" ")
                if not pt_text.isdigit() or int(pt_text) != current.payload_type:
                    continue
                if name == "rtpmap":
                    enc = params.strip().split("/")
                    current.encoding = enc[0].upper()
                    if len(enc) > 1 and enc[1].isdigit():
                        current.clock_rate = int(enc[1])
                    if len(enc) > 2 and enc[2].isdigit():
                        current.channels = int(enc[2])
                else:
                    for part in params.split(";"):
                        key, sep, val = part.strip().partition("=")
                        if sep:
                            current.fmtp[key.strip().lower()] = val.strip()
    for m in sdp.media:
        if not m.encoding and m.payload_type is not None:
            m.encoding, m.clock_rate = _STATIC.get(m.payload_type, ("", 0))
    return sdp


# Static payload types (RFC 3551) a camera may use without an rtpmap line.
_STATIC = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 26: ("JPEG", 90000)}


def resolve_control(base: str, control: str) -> str:
    """The URL a ``control`` attribute names: absolute, ``*`` (the base itself) or relative to ``base``."""
    if not control or control == "*":
        return base
    if "://" in control:
        return control
    return base + control if base.endswith("/") else base + "/" + control
