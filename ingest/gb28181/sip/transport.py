"""SIP over UDP and TCP on asyncio: sockets in, whole parsed messages out.

One ``UdpTransport`` and one ``TcpTransport`` share the bind address. Both hand every
message, with the ``Peer`` it came from, to a ``deliver`` callback, and report messages
that could not be parsed to ``reject`` (source, reason) instead of raising: a bad packet
from one device never disturbs another. TCP connections are kept per peer, so a request
to a device that connected to us goes back over its own connection (the only way through
its NAT), and one we open ourselves is reused.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Callable

from ingest.gb28181.sip.message import MAX_MESSAGE, SipMessage, SipParseError, StreamFramer, parse_message

log = logging.getLogger(__name__)

# A Catalog burst from an NVR with hundreds of channels arrives as many datagrams at once.
UDP_RCVBUF = 4 * 1024 * 1024
TCP_IDLE_SECONDS = 600.0


@dataclass(frozen=True)
class Peer:
    """Where a message came from or goes to: ``transport`` is "UDP" or "TCP"."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport.lower()}:{self.host}:{self.port}"


Deliver = Callable[[SipMessage, Peer], None]
Reject = Callable[[Peer, str], None]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: "UdpTransport") -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = Peer("UDP", addr[0], addr[1])
        if not data.strip(b"\r\n\x00 "):
            return  # NAT keepalive: a bare CRLF or zero bytes
        try:
            message = parse_message(data, datagram=True)
        except SipParseError as exc:
            self.owner.reject(peer, str(exc))
            return
        self.owner.deliver(message, peer)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a device that went away: the transaction times out.
        log.debug("udp: %s", exc)


class UdpTransport:
    def __init__(self, deliver: Deliver, reject: Reject) -> None:
        self.deliver, self.reject = deliver, reject
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        sock.bind((host, port))
        sock.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=sock)
        self._transport = transport
        bound = sock.getsockname()
        return bound[0], bound[1]

    def send(self, data: bytes, peer: Peer) -> None:
        if self._transport is None:
            raise ConnectionError("the SIP UDP transport is not started")
        self._transport.sendto(data, (peer.host, peer.port))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class _TcpConnection:
    def __init__(self, owner: "TcpTransport", reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 peer: Peer) -> None:
        self.owner, self.reader, self.writer, self.peer = owner, reader, writer, peer
        self.framer = StreamFramer()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(MAX_MESSAGE), TCP_IDLE_SECONDS)
                if not data:
                    return
                try:
                    frames = self.framer.feed(data)
                except SipParseError as exc:
                    self.owner.reject(self.peer, f"{exc}; connection closed")
                    return
                for frame in frames:
                    try:
                        message = parse_message(frame, datagram=False)
                    except SipParseError as exc:
                        self.owner.reject(self.peer, str(exc))
                        continue
                    self.owner.deliver(message, self.peer)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            return
        finally:
            self.owner._forget(self)
            self.writer.close()


class TcpTransport:
    def __init__(self, deliver: Deliver, reject: Reject) -> None:
        self.deliver, self.reject = deliver, reject
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[tuple[str, int], _TcpConnection] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future[_TcpConnection]] = {}

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accepted, host, port, reuse_address=True)
        bound = self._server.sockets[0].getsockname()
        return bound[0], bound[1]

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        self._adopt(reader, writer, Peer("TCP", addr[0], addr[1]))

    def _adopt(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> _TcpConnection:
        conn = _TcpConnection(self, reader, writer, peer)
        old = self._connections.get((peer.host, peer.port))
        if old is not None and old.task is not None:
            old.task.cancel()
        self._connections[(peer.host, peer.port)] = conn
        conn.task = asyncio.get_running_loop().create_task(conn.run())
        return conn

    def _forget(self, conn: _TcpConnection) -> None:
        key = (conn.peer.host, conn.peer.port)
        if self._connections.get(key) is conn:
            del self._connections[key]

    async def send(self, data: bytes, peer: Peer, *, timeout: float = 5.0) -> None:
        """Send over the peer's connection, opening one (and reading from it) if there is none."""
        key = (peer.host, peer.port)
        conn = self._connections.get(key)
        if conn is None:
            pending = self._connecting.get(key)
            if pending is None:
                pending = asyncio.get_running_loop().create_future()
                self._connecting[key] = pending
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(peer.host, peer.port), timeout)
                    pending.set_result(self._adopt(reader, writer, peer))
                except BaseException as exc:
                    pending.set_exception(ConnectionError(f"TCP connect to {peer.host}:{peer.port} failed: {exc}"))
                    pending.exception()  # retrieved: nobody else may be waiting
                    raise ConnectionError(f"TCP connect to {peer.host}:{peer.port} failed: {exc}") from None
                finally:
                    self._connecting.pop(key, None)
            conn = await asyncio.shield(pending)
        conn.writer.write(data)
        await conn.writer.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections.values()):
            if conn.task is not None:
                conn.task.cancel()
            conn.writer.close()
        self._connections.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
