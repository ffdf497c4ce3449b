"""``MediaReceiver``: the RTP side of one GB/T 28181 media session, on one port of ``GB_RTP_PORTS``.

Media is bound to the session by its port, never by SSRC: Dahua devices send SSRC 0 and lower
platforms pick their own, so a packet with another SSRC than the one agreed is counted
(``ssrc_mismatches``, logged once) and kept. Transports:

- ``udp``: a UDP socket with an 8 MiB receive buffer (a PS keyframe is a burst of ~70 packets)
  and a reorder window; a sequence gap is reported as a loss so the PS demuxer resynchronises.
- ``tcp-passive``: we listen on the port and the device connects (one connection at a time;
  a reconnecting device replaces the old one).
- ``tcp-active``: we connect to the address in the device's SDP answer.

On TCP the framing is RFC 4571 (a 16-bit length); devices that use RTSP-style ``$`` framing
instead are detected from the first bytes and read as such.

Payloads go to ``on_payload(bytes)``; a loss to ``on_payload(None)``. Everything here runs on
the GB service's event loop; the callback must not block (the media session queues).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from dataclasses import dataclass
from typing import Callable

from ingest.gb28181.media.sdp import MediaTransport
from ingest.rtp.framing import FramingError, InterleavedDecoder, InterleavedFrame, Rfc4571Decoder
from ingest.rtp.packet import RtpError, RtpPacket, parse_rtp
from ingest.rtp.reorder import ReorderBuffer
from ingest.rtp.udp import UdpReceiver, open_udp_receiver

log = logging.getLogger(__name__)

Payload = Callable[[bytes | None], None]


@dataclass
class ReceiverStats:
    packets: int = 0
    bytes: int = 0
    bad_packets: int = 0
    ssrc: int | None = None  # the SSRC seen last
    ssrc_mismatches: int = 0
    lost: int = 0
    late: int = 0
    connections: int = 0
    framing: str = ""  # "rfc4571" or "$" on TCP


class PortPool:
    """The ports of ``GB_RTP_PORTS``; a port is ours while a session holds it."""

    def __init__(self, first: int, last: int) -> None:
        if not 0 < first <= last < 65536:
            raise ValueError(f"bad GB/T 28181 RTP port range {first}-{last}")
        self.first, self.last = first, last
        self._held: set[int] = set()
        self._next = first

    def candidates(self) -> list[int]:
        """Free ports to try, starting after the last one given (so a port rests between sessions)."""
        span = self.last - self.first + 1
        start = self._next
        ports = [self.first + (start - self.first + i) % span for i in range(span)]
        return [p for p in ports if p not in self._held]

    def hold(self, port: int) -> None:
        self._held.add(port)
        self._next = port + 1 if port < self.last else self.first

    def release(self, port: int) -> None:
        self._held.discard(port)

    @property
    def in_use(self) -> int:
        return len(self._held)


class MediaReceiver:
    """Receives one session's RTP; ``start`` binds a port from the pool."""

    def __init__(self, camera_id: str, transport: MediaTransport, host: str, pool: PortPool, on_payload: Payload,
                 expected_ssrc: int | None = None) -> None:
        self.camera_id = camera_id
        self.transport = transport
        self.host = host
        self.pool = pool
        self.on_payload = on_payload
        self.expected_ssrc = expected_ssrc
        self.stats = ReceiverStats()
        self.port = 0
        self._udp: UdpReceiver | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._reorder = ReorderBuffer()
        self._warned_ssrc = False

    async def start(self) -> int:
        """Bind a free port of the pool (UDP, or a TCP listener for tcp-passive); return it.
        For tcp-active the port is only named in our SDP (a local port for the connect)."""
        for port in self.pool.candidates():
            try:
                if self.transport == "udp":
                    self._udp = await open_udp_receiver(self.host, port, self._datagram)
                elif self.transport == "tcp-passive":
                    self._server = await asyncio.start_server(self._accepted, self.host, port, reuse_address=True)
                else:
                    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    try:
                        probe.bind((self.host, port))
                    finally:
                        probe.close()
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self.port = port
            self.pool.hold(port)
            return port
        raise OSError(errno.EADDRINUSE, f"camera {self.camera_id}: every port of GB_RTP_PORTS "
                      f"{self.pool.first}-{self.pool.last} is in use; widen the range")

    async def connect(self, host: str, port: int, timeout: float) -> None:
        """tcp-active: connect to the device's media port (from its SDP answer)."""
        # Retried until ``timeout``: a device may start listening only as it answers the INVITE.
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                break
            except ConnectionRefusedError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self._serve(reader, writer)

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for task in list(self._tasks):
            task.cancel()
        if self.port:
            self.pool.release(self.port)
            self.port = 0

    # -- receiving -------------------------------------------------------------------

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        packet = self._parse(data)
        if packet is None:
            return
        lost = self._reorder.lost
        released = self._reorder.push(packet)
        if self._reorder.lost != lost:
            self.stats.lost = self._reorder.lost
            self.on_payload(None)
        self.stats.late = self._reorder.late
        for p in released:
            self.on_payload(p.payload)

    def _parse(self, data: bytes) -> RtpPacket | None:
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.stats.bad_packets += 1
            return None
        self.stats.packets += 1
        self.stats.bytes += len(data)
        self.stats.ssrc = packet.ssrc
        if self.expected_ssrc is not None and packet.ssrc != self.expected_ssrc:
            self.stats.ssrc_mismatches += 1
            if not self._warned_ssrc:
                self._warned_ssrc = True
                log.info("camera %s: RTP SSRC %d is not the %d agreed; kept (media is bound by port)",
                         self.camera_id, packet.ssrc, self.expected_ssrc)
        return packet

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            self._writer.close()  # the device reconnected: the new connection wins
        self._serve(reader, writer)

    def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.stats.connections += 1
        task = asyncio.get_running_loop().create_task(self._read_tcp(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder: Rfc4571Decoder | InterleavedDecoder | None = None
        head = b""
        last_seq: int | None = None
        try:
            while True:
                data = await reader.read(262144)
                if not data:
                    return
                if decoder is None:
                    head += data
                    if len(head) < 6:
                        continue
                    # '$', a channel, a length, then an RTP v2 header; else RFC 4571.
                    dollar = head[0] == 0x24 and head[4] & 0xC0 == 0x80
                    decoder = InterleavedDecoder() if dollar else Rfc4571Decoder()
                    self.stats.framing = "$" if dollar else "rfc4571"
                    data, head = head, b""
                for item in decoder.feed(data):
                    if isinstance(item, InterleavedFrame):
                        if item.channel % 2:
                            continue  # RTCP
                        raw = item.data
                    elif isinstance(item, bytes):
                        raw = item
                    else:
                        continue  # an RTSP text message in a $ stream: nothing for us
                    packet = self._parse(raw)
                    if packet is None:
                        continue
                    if last_seq is not None and packet.sequence != (last_seq + 1) & 0xFFFF:
                        self.stats.lost += 1
                        self.on_payload(None)
                    last_seq = packet.sequence
                    self.on_payload(packet.payload)
        except (ConnectionError, FramingError) as exc:
            log.info("camera %s: media connection ended: %s", self.camera_id, exc)
        finally:
            writer.close()
            if self._writer is writer:
                self._writer = None
