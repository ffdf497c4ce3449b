"""RTP over a TCP byte stream: RTSP interleaved frames (RFC 2326 §10.12) and RFC 4571.

- RTSP interleaved: ``$``, a channel byte, a 16-bit length, then the packet. RTSP messages
  (the answers to our keep-alives, or a request from the server) arrive in the same
  stream between frames; :class:`InterleavedDecoder` hands those on whole, as text
  messages, for the RTSP client to parse.
- RFC 4571 (GB/T 28181 over TCP, active or passive): a 16-bit length, then the packet.

Both decoders take bytes as they come off the socket (any split) and are bounded: a
frame is at most 65535 bytes by its length field, and an RTSP message head and body have
explicit limits, past which :class:`FramingError` is raised (the caller drops the
connection: a peer that sends that is broken or hostile). Bytes that start neither a
frame nor a message are skipped up to the next ``$`` and counted in ``skipped``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_RTSP_HEAD = 64 * 1024
MAX_RTSP_BODY = 1024 * 1024

_LEN16 = struct.Struct("!H")


class FramingError(ValueError):
    """The TCP stream cannot be framed (a message past its bound); close the connection."""


@dataclass(frozen=True, slots=True)
class InterleavedFrame:
    """One ``$`` frame: ``channel`` (by SETUP: even = RTP, odd = RTCP, usually) and its bytes."""

    channel: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RtspText:
    """One RTSP message seen in the interleaved stream: head (start line + headers) and body."""

    head: bytes
    body: bytes


def interleave(channel: int, data: bytes) -> bytes:
    """Frame ``data`` for RTSP interleaved transport on ``channel``."""
    if len(data) > 0xFFFF:
        raise ValueError(f"an interleaved frame holds at most 65535 B, not {len(data)}")
    return b"$" + bytes((channel & 0xFF,)) + _LEN16.pack(len(data)) + data


def frame_rfc4571(data: bytes) -> bytes:
    """Frame one RTP or RTCP packet for RFC 4571 (a 16-bit length prefix)."""
    if len(data) > 0xFFFF:
        raise ValueError(f"an RFC 4571 frame holds at most 65535 B, not {len(data)}")
    return _LEN16.pack(len(data)) + data


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            try:
                n = int(value.strip())
            except ValueError as exc:
                raise FramingError(f"RTSP Content-Length is not a number: {value[:40]!r}") from exc
            if not 0 <= n <= MAX_RTSP_BODY:
                raise FramingError(f"RTSP body of {n} B is past the {MAX_RTSP_BODY} B bound")
            return n
    return 0


class InterleavedDecoder:
    """Feed TCP bytes from an RTSP connection; get frames and text messages in stream order.

    :meth:`feed_spans` is the receive hot path (no object or copy per frame); :meth:`feed`
    gives :class:`InterleavedFrame` objects on top of it.
    """

    def __init__(self) -> None:
        self._buf = b""  # the incomplete frame or message left from the last read
        self.skipped = 0  # bytes that were neither a frame nor a message

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete frame or message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[InterleavedFrame | RtspText]:
        buf, items = self.feed_spans(data)
        out: list[InterleavedFrame | RtspText] = []
        i, n = 0, len(items)
        while i < n:
            item = items[i]
            if type(item) is int:
                out.append(InterleavedFrame(item, buf[items[i + 1]:items[i + 2]]))  # type: ignore[misc,index]
                i += 3
            else:
                out.append(item)  # type: ignore[arg-type]
                i += 1
        return out

    def feed_spans(self, data: bytes) -> tuple[bytes, list[int | RtspText]]:
        """Take the bytes of one read; return the buffer they were framed in and, in stream order,
        ``channel, start, end`` (three ints) for each whole frame, its packet being
        ``buffer[start:end]``, or an :class:`RtspText` for each whole message.

        The buffer is ``data`` itself unless the last read left part of a frame (then the
        two joined): frames are not copied out one by one.
        """
        buf = self._buf + data if self._buf else bytes(data)
        out: list[int | RtspText] = []
        pos = 0
        n = len(buf)
        while pos < n:
            if buf[pos] == 0x24:  # '$'
                if n - pos < 4:
                    break
                end = pos + 4 + ((buf[pos + 2] << 8) | buf[pos + 3])
                if end > n:
                    break
                out += (buf[pos + 1], pos + 4, end)
                pos = end
                continue
            if 0x41 <= buf[pos] <= 0x5A:  # 'A'..'Z': "RTSP/1.0 ..." or a request from the server
                head_end = buf.find(b"\r\n\r\n", pos)
                if head_end < 0:
                    if n - pos > MAX_RTSP_HEAD:
                        raise FramingError(f"RTSP message head past the {MAX_RTSP_HEAD} B bound")
                    break
                if head_end - pos > MAX_RTSP_HEAD:
                    raise FramingError(f"RTSP message head past the {MAX_RTSP_HEAD} B bound")
                head = buf[pos:head_end]
                body_start = head_end + 4
                body_end = body_start + _content_length(head)
                if body_end > n:
                    break
                out.append(RtspText(head, buf[body_start:body_end]))
                pos = body_end
                continue
            nxt = buf.find(b"$", pos + 1)
            skip_to = n if nxt < 0 else nxt
            self.skipped += skip_to - pos
            pos = skip_to
        self._buf = buf[pos:] if pos < n else b""
        return buf, out


class Rfc4571Decoder:
    """Feed TCP bytes of an RFC 4571 stream; get whole RTP/RTCP packets."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
            if end > n:
                break
            if end > pos + 2:  # a zero-length frame carries nothing; skip it
                out.append(bytes(buf[pos + 2:end]))
            pos = end
        if pos:
            del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)
