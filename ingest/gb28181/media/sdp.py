"""The SDP of GB/T 28181 media INVITEs (GB/T 28181-2016 Annex F): our offer and the device's answer.

Our offer names PS/90000 (payload 96) and the H.264 (98) and H.265 (99) rtpmaps, ``a=recvonly``,
the 10-digit SSRC in ``y=``, and for TCP ``TCP/RTP/AVP`` with ``a=setup:passive`` (we listen,
the device connects) or ``a=setup:active`` (we connect to the port it answers).
``s=Playback`` and ``s=Download`` add ``u=`` and the time range in ``t=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MediaTransport = Literal["udp", "tcp-passive", "tcp-active"]
MEDIA_TRANSPORTS: tuple[MediaTransport, ...] = ("udp", "tcp-passive", "tcp-active")
SessionName = Literal["Play", "Playback", "Download"]

PT_PS = 96
PT_H264 = 98
PT_H265 = 99


def make_ssrc(domain: str, sequence: int, history: bool = False) -> str:
    """The 10-digit SSRC of GB/T 28181-2016 Annex F: 0 live / 1 history, digits 4-8 of the
    domain, then a 4-digit sequence."""
    return f"{1 if history else 0}{domain[3:8]}{sequence % 10000:04d}"


def offer(*, session: SessionName, our_id: str, media_host: str, port: int, transport: MediaTransport,
          ssrc: str, channel_id: str = "", start_s: int = 0, end_s: int = 0, download_speed: int = 4) -> bytes:
    """Our SDP offer for an INVITE of ``session`` to a device channel."""
    proto = "RTP/AVP" if transport == "udp" else "TCP/RTP/AVP"
    lines = [
        "v=0",
        f"o={our_id} 0 0 IN IP4 {media_host}",
        f"s={session}",
    ]
    if session != "Play":
        lines.append(f"u={channel_id}:0")
    lines += [
        f"c=IN IP4 {media_host}",
        f"t={start_s} {end_s}" if session != "Play" else "t=0 0",
        f"m=video {port} {proto} {PT_PS} {PT_H264} {PT_H265}",
        "a=recvonly",
        f"a=rtpmap:{PT_PS} PS/90000",
        f"a=rtpmap:{PT_H264} H264/90000",
        f"a=rtpmap:{PT_H265} H265/90000",
    ]
    if transport != "udp":
        lines += [f"a=setup:{'passive' if transport == 'tcp-passive' else 'active'}", "a=connection:new"]
    if session == "Download":
        lines.append(f"a=downloadspeed:{download_speed}")
    lines.append(f"y={ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


@dataclass(frozen=True)
class Answer:
    """What the device's SDP answer tells us: where it sends from (or listens, for TCP active)."""

    host: str
    port: int
    tcp: bool
    setup: str  # "active" / "passive" / "" (UDP)
    ssrc: int | None  # from y=, when there is one
    payload_types: dict[int, str]
    session: str

    @property
    def ps(self) -> bool:
        """True when the device sends PS (the only payload we take): PS in the rtpmaps, or none given."""
        return not self.payload_types or any(name.upper() == "PS" for name in self.payload_types.values())


class SdpError(ValueError):
    """An SDP answer we cannot use; the message says what is missing."""


def parse_answer(body: bytes) -> Answer:
    """Parse a device's SDP answer (lenient: GB2312 ``s=`` lines and odd spacing are fine)."""
    text = body.decode("utf-8", "replace")
    host = ""
    port = -1
    tcp = False
    setup = ""
    ssrc: int | None = None
    pts: dict[int, str] = {}
    session = ""
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        key, value = line[0], line[2:].strip()
        if key == "c" and not host:
            parts = value.split()
            if len(parts) >= 3:
                host = parts[2].split("/")[0]
        elif key == "s":
            session = value
        elif key == "m" and value.startswith("video") and port < 0:
            parts = value.split()
            try:
                port = int(parts[1].split("/")[0])
            except (IndexError, ValueError) as exc:
                raise SdpError(f"SDP answer has a bad m= line: {line!r}") from exc
            tcp = len(parts) > 2 and parts[2].upper().startswith("TCP")
        elif key == "a":
            if value.startswith("setup:"):
                setup = value[6:].strip().lower()
            elif value.startswith("rtpmap:"):
                pt, _, codec = value[7:].partition(" ")
                if pt.strip().isdigit():
                    pts[int(pt)] = codec.split("/")[0].strip()
        elif key == "y":
            digits = value.strip()
            if digits.isdigit():
                ssrc = int(digits) & 0xFFFFFFFF
    if port < 0:
        raise SdpError("SDP answer has no m=video line")
    return Answer(host, port, tcp, setup, ssrc, pts, session)
