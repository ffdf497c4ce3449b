"""Receiving RTP and RTCP over UDP on an asyncio loop, with a receive buffer that holds a keyframe.

A keyframe arrives as a burst (70+ packets at once for GB/T 28181 PS, more for a 4 Mbit/s
1080p IDR). With Linux's default receive buffer (~208 KiB) a Python receiver on loopback
lost packets of such bursts; with 8 MiB it lost none (shared/notes/peers.md). So every
socket here asks for :data:`RTP_RCVBUF`. ``net.core.rmem_max`` caps ``SO_RCVBUF`` for
ordinary processes; as root ``SO_RCVBUFFORCE`` goes past it. The size the kernel really
gave is kept in ``rcvbuf`` so the status can show a receiver that could not get it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Callable

log = logging.getLogger(__name__)

RTP_RCVBUF = 8 * 1024 * 1024
# SO_RCVBUFFORCE is Linux's; Python exposes it on 3.12+ only on some builds.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def set_receive_buffer(sock: socket.socket, size: int = RTP_RCVBUF) -> int:
    """Ask for a ``size``-byte receive buffer; return what the kernel gave (it reports double)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if got < size:
        log.warning("UDP receive buffer is %d B, less than the %d B asked for (raise net.core.rmem_max); "
                    "keyframe bursts may be lost", got, size)
    return int(got)


# Datagrams read at most per wake-up beyond the one asyncio read (a keyframe burst is ~70-200).
DRAIN_MAX = 512


class _Datagrams(asyncio.DatagramProtocol):
    """Delivers every datagram waiting on the socket at each wake-up.

    asyncio's datagram transport reads one datagram per wake-up. An ingest loop that waits
    between polls (``ingest_read_batch_ms``) would then take one packet per wait and fall
    behind the camera, so the rest of the queue is read here, from the same socket."""

    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None], sock: socket.socket) -> None:
        self.on_datagram = on_datagram
        self.sock = sock
        self.errors = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)
        for _ in range(DRAIN_MAX):
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.errors += 1  # as error_received: an ICMP error queued on the socket
                return
            self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.errors += 1  # e.g. ICMP port unreachable after our RTCP to a camera that left


class UdpReceiver:
    """One bound UDP socket on the running loop that calls ``on_datagram(data, addr)`` per datagram."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Datagrams, rcvbuf: int) -> None:
        self.transport = transport
        self._protocol = protocol
        self.rcvbuf = rcvbuf

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    @property
    def errors(self) -> int:
        return self._protocol.errors

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send a datagram from this socket (an RTCP receiver report, a NAT punch)."""
        self.transport.sendto(data, addr)

    def close(self) -> None:
        self.transport.close()


def _bound_socket(host: str, port: int, rcvbuf: int) -> tuple[socket.socket, int]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        got = set_receive_buffer(sock, rcvbuf)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock, got


async def open_udp_receiver(host: str, port: int, on_datagram: Callable[[bytes, tuple[str, int]], None], *,
                            rcvbuf: int = RTP_RCVBUF) -> UdpReceiver:
    """Bind ``host:port`` (0 = any free port) and deliver its datagrams to ``on_datagram``."""
    sock, got = _bound_socket(host, port, rcvbuf)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(lambda: _Datagrams(on_datagram, sock), sock=sock)
    return UdpReceiver(transport, protocol, got)


async def open_rtp_rtcp_pair(host: str, on_rtp: Callable[[bytes, tuple[str, int]], None],
                             on_rtcp: Callable[[bytes, tuple[str, int]], None], *, rcvbuf: int = RTP_RCVBUF,
                             attempts: int = 50) -> tuple[UdpReceiver, UdpReceiver]:
    """Bind an even RTP port and the odd RTCP port above it (RFC 3550 §11), as cameras expect."""
    for _ in range(attempts):
        probe, _ = _bound_socket(host, 0, 4096)
        port = probe.getsockname()[1]
        probe.close()
        port -= port % 2
        try:
            rtp = await open_udp_receiver(host, port, on_rtp, rcvbuf=rcvbuf)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        try:
            rtcp = await open_udp_receiver(host, port + 1, on_rtcp, rcvbuf=256 * 1024)
        except OSError as exc:
            rtp.close()
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        return rtp, rtcp
    raise OSError(errno.EADDRINUSE, f"no free even/odd UDP port pair on {host} after {attempts} tries")
