"""A small asyncio RTSP 1.0 server (RFC 2326) that serves H.264 over RTP (RFC 6184).

It serves whatever implements ``AccessUnitSource``: the simulated cameras of ``sharpeyes
demo`` and the restream of live cameras (``streams.live.restream``). Transports: RTP/AVP/TCP interleaved, and RTP/AVP over
UDP unicast. Each session is sent by its own task from its own bounded subscription, so a
slow client only ever loses its own frames (it skips to the next keyframe).

Hostile clients: an optional ``authorize`` hook decides DESCRIBE and SETUP (401 with its
challenge otherwise) and hears when a session plays and ends, for audit; a connection
that sends no complete request within ``idle_timeout`` (none while it plays over TCP) or
dribbles a request head for longer than ``header_timeout`` is closed; one address holds
at most ``max_connections_per_client`` connections and a connection at most
``max_sessions_per_connection`` sessions. UDP sessions that never played end with their
connection, so their sockets are not held for the session timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote, urlsplit

from ingest.access_unit import AccessUnit
from ingest.rtp.h264 import sdp_fmtp

log = logging.getLogger(__name__)

TRACK_CONTROL = "trackID=0"
PAYLOAD_TYPE = 96
SESSION_TIMEOUT_S = 60.0
# How long PLAY waits for the source's next keyframe before giving up.
PLAY_WAIT_S = 10.0
# How long DESCRIBE waits for a live source to learn its SPS/PPS.
DESCRIBE_WAIT_S = 5.0
# Request bodies (SET_PARAMETER, GET_PARAMETER) are tiny; refuse anything large.
MAX_BODY = 64 * 1024
# RTCP sender report interval (RFC 3550 allows 5 s as a fixed minimum).
RTCP_INTERVAL_S = 5.0
# Seconds between 1900-01-01 (NTP epoch) and 1970-01-01 (UNIX epoch).
NTP_UNIX_OFFSET = 2_208_988_800
SUPPORTED_METHODS = ("OPTIONS", "DESCRIBE", "SETUP", "PLAY", "TEARDOWN", "GET_PARAMETER")

_RTP_HEADER = struct.Struct("!BBHII")
_INTERLEAVED = struct.Struct("!cBH")
_RTCP_SR = struct.Struct("!BBHIIIIII")

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    453: "Not Enough Bandwidth",
    404: "Not Found",
    415: "Unsupported Media Type",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
}


class Subscription(Protocol):
    """What ``AccessUnitSource.subscribe`` returns: access units from a keyframe on."""

    def __aiter__(self) -> Subscription: ...

    async def __anext__(self) -> AccessUnit: ...

    def close(self) -> None: ...


class AccessUnitSource(Protocol):
    """A stream the server can serve. ``ingest.live.fanout.AccessUnitFanout`` does the hard part."""

    codec: str  # only "h264" is served; other sources are refused at DESCRIBE

    def parameter_sets(self) -> tuple[bytes, ...]:
        """(SPS, PPS) NAL units without start codes, or () while not yet known."""
        ...

    def subscribe(self) -> Subscription:
        """A new subscription whose first access unit is a keyframe."""
        ...


@dataclass
class SessionInfo:
    """A snapshot of one RTSP session, for metrics and tests."""

    id: str
    path: str
    transport: str  # "tcp" or "udp"
    playing: bool
    packets_sent: int
    bytes_sent: int
    dropped_access_units: int


@dataclass
class _Request:
    method: str
    url: str
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def content_length(self) -> int | None:
        """The body length, or None if the header is malformed or too large to accept."""
        try:
            length = int(self.headers.get("content-length", "0") or 0)
        except ValueError:
            return None
        return length if 0 <= length <= MAX_BODY else None


@dataclass
class _Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Run after the response is written: PLAY starts sending only then, so the client
    # reads the reply before the first RTP packet.
    after: Callable[[], None] | None = None


class _UdpPair(asyncio.DatagramProtocol):
    """The server's RTP/RTCP sockets for one UDP session; incoming RTCP keeps it alive."""

    def __init__(self, on_packet: Callable[[], None]) -> None:
        self._on_packet = on_packet

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_packet()


@dataclass(eq=False)
class _Session:
    id: str
    path: str
    source: AccessUnitSource
    conn: _Connection
    transport: str
    track_url: str
    channel: int = 0  # interleaved RTP channel (RTCP is channel + 1)
    client_rtp: tuple[str, int] | None = None
    client_rtcp: tuple[str, int] | None = None
    udp_rtp: asyncio.DatagramTransport | None = None
    udp_rtcp: asyncio.DatagramTransport | None = None
    server_ports: tuple[int, int] = (0, 0)
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    seq: int = field(default_factory=lambda: random.getrandbits(16))
    ts_offset: int = field(default_factory=lambda: random.getrandbits(32))
    last_seen: float = field(default_factory=time.monotonic)
    subscription: Subscription | None = None
    sender: asyncio.Task[None] | None = None
    grant: Grant | None = None
    packets_sent: int = 0
    bytes_sent: int = 0
    payload_octets: int = 0  # for RTCP: RTP payload bytes, headers excluded
    last_report: float = 0.0

    def rtp_timestamp(self, au: AccessUnit) -> int:
        return (self.ts_offset + au.pts_90k) & 0xFFFFFFFF

    def rtp_packets(self, au: AccessUnit) -> list[bytes]:
        """RTP packets for one access unit: the shared payloads with this session's header."""
        payloads = au.rtp_payloads
        ts = self.rtp_timestamp(au)
        last = len(payloads) - 1
        out = []
        for i, payload in enumerate(payloads):
            marker = 0x80 if i == last else 0
            out.append(_RTP_HEADER.pack(0x80, marker | PAYLOAD_TYPE, self.seq, ts, self.ssrc) + payload)
            self.seq = (self.seq + 1) & 0xFFFF
            self.payload_octets += len(payload)
        self.packets_sent += len(out)
        return out

    def sender_report(self, au: AccessUnit, cname: str) -> bytes:
        """An RTCP SR + SDES(CNAME) compound packet (RFC 3550 §6.4.1, §6.5), as of now.

        The RTP timestamp for "now" is extrapolated from ``au``'s capture time, so it is
        right even while a cached GOP is sent faster than real time.
        """
        now = time.time()
        captured = au.wallclock if au.wallclock is not None else now
        rtp_now = (self.rtp_timestamp(au) + round((now - captured) * 90000)) & 0xFFFFFFFF
        ntp = now + NTP_UNIX_OFFSET
        ntp_sec = int(ntp)
        ntp_frac = int((ntp - ntp_sec) * (1 << 32)) & 0xFFFFFFFF
        sr = _RTCP_SR.pack(
            0x80, 200, 6, self.ssrc, ntp_sec & 0xFFFFFFFF, ntp_frac, rtp_now,
            self.packets_sent & 0xFFFFFFFF, self.payload_octets & 0xFFFFFFFF,
        )  # fmt: skip
        item = b"\x01" + bytes((len(cname),)) + cname.encode()
        chunk = struct.pack("!I", self.ssrc) + item + b"\x00"
        chunk += b"\x00" * (-len(chunk) % 4)  # the END item, then padding to a 32-bit boundary
        sdes = struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk
        return sr + sdes

    def info(self) -> SessionInfo:
        return SessionInfo(
            id=self.id,
            path=self.path,
            transport=self.transport,
            playing=self.sender is not None,
            packets_sent=self.packets_sent,
            bytes_sent=self.bytes_sent,
            dropped_access_units=getattr(self.subscription, "dropped", 0),
        )


class Denied(Exception):
    """Raised by an ``authorize`` hook: answer ``status`` with ``headers`` (a challenge)."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers or {}


class Grant(Protocol):
    """What ``authorize`` returns: who may watch; told when a session plays and ends."""

    user: str

    def playing(self, session_id: str, path: str) -> None: ...

    def ended(self, session_id: str, path: str, reason: str) -> None: ...


# authorize(method, url, headers, peer address, path) -> Grant, or raises Denied.
Authorize = Callable[[str, str, dict[str, str], str, str], Awaitable[Grant]]


class _Connection:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer_host: str = peer[0] if peer else "127.0.0.1"
        local = writer.get_extra_info("sockname")
        self.local_host: str = local[0] if local else "127.0.0.1"
        self.sessions: set[_Session] = set()
        self.grant: Grant | None = None
        self.grant_path: str | None = None


class RtspServer:
    """RTSP 1.0 server for H.264 sources: ``add_path`` then ``await start()``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8554,
        *,
        session_timeout: float = SESSION_TIMEOUT_S,
        enable_udp: bool = True,
        send_buffer: int | None = None,
        authorize: Authorize | None = None,
        idle_timeout: float | None = None,
        header_timeout: float = 10.0,
        max_connections_per_client: int | None = None,
        max_sessions_per_connection: int | None = None,
    ) -> None:
        """``send_buffer`` sets SO_SNDBUF on client connections; None keeps the kernel's
        autotuning. Loopback's 64 KiB MSS lets that grow past a megabyte, which hides a
        stalled local client for tens of seconds; tests set it small."""
        self.host = host
        self.send_buffer = send_buffer
        self._port = port
        self.session_timeout = session_timeout
        self.enable_udp = enable_udp
        self.authorize = authorize
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.max_connections_per_client = max_connections_per_client
        self.max_sessions_per_connection = max_sessions_per_connection
        self._paths: dict[str, AccessUnitSource] = {}
        self._sessions: dict[str, _Session] = {}
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None

    # -- public API -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The listening port (the real one once started, when constructed with port 0)."""
        return self._port

    def url(self, path: str) -> str:
        """The rtsp:// URL of a path on this server."""
        return f"rtsp://{self.host}:{self.port}/{path.strip('/')}"

    def add_path(self, path: str, source: AccessUnitSource) -> None:
        """Serve ``source`` at ``/path`` (which may contain slashes, e.g. ``sim-1/sub``)."""
        key = path.strip("/")
        if key in self._paths:
            raise ValueError(f"path already served: {key}")
        self._paths[key] = source

    def remove_path(self, path: str) -> None:
        """Stop serving a path and end its sessions (their TCP connections are closed)."""
        key = path.strip("/")
        self._paths.pop(key, None)
        for session in [s for s in self._sessions.values() if s.path == key]:
            if session.transport == "tcp":
                session.conn.writer.close()
            self._end_session(session, "camera removed")

    def paths(self) -> list[str]:
        return sorted(self._paths)

    def session_count(self, path: str | None = None) -> int:
        """Sessions set up (playing or not) on ``path``, or on all paths."""
        key = None if path is None else path.strip("/")
        return sum(1 for s in self._sessions.values() if key is None or s.path == key)

    def sessions(self) -> list[SessionInfo]:
        return [s.info() for s in self._sessions.values()]

    def connection_count(self) -> int:
        return len(self._connections)

    def end_session(self, session_id: str, reason: str = "ended by the server") -> bool:
        """End one session now (its user lost the right to watch); True when it existed."""
        session = self._sessions.get(session_id)
        if session is None:
            return False
        if session.transport == "tcp":
            session.conn.writer.close()
        self._end_session(session, reason)
        return True

    async def start(self) -> None:
        """Listen. Call on the event loop that the sources publish on."""
        self._server = await asyncio.start_server(self._handle, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        self._reaper = asyncio.create_task(self._reap(), name="rtsp-session-reaper")
        log.info("RTSP server listening on rtsp://%s:%d", self.host, self._port)

    async def close(self) -> None:
        """Stop listening, end every session and close every connection."""
        if self._server is not None:
            self._server.close()
        if self._reaper is not None:
            self._reaper.cancel()
        for session in list(self._sessions.values()):
            self._end_session(session, "server stopping")
        for conn in list(self._connections):
            conn.writer.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- connection handling ----------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(writer)
        cap = self.max_connections_per_client
        if cap is not None and sum(1 for c in self._connections if c.peer_host == conn.peer_host) >= cap:
            writer.write(_format_response(_Response(503), "0"))
            writer.close()
            return
        self._connections.add(conn)
        sock = writer.get_extra_info("socket")
        if self.send_buffer is not None and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        try:
            while True:
                # A connection playing over TCP may stay quiet (its data flows the other way);
                # any other must keep sending requests (or RTCP) within the idle timeout.
                quiet_ok = any(s.sender is not None and s.transport == "tcp" for s in conn.sessions)
                first = await asyncio.wait_for(reader.readexactly(1), None if quiet_ok else self.idle_timeout)
                if first in (b"\r", b"\n"):
                    continue  # stray line ends between requests
                if first == b"$":
                    # Interleaved data from the client: RTCP receiver reports. Read and
                    # discard, but they show the client is alive.
                    _, _, size = _INTERLEAVED.unpack(first + await reader.readexactly(3))
                    await reader.readexactly(size)
                    for session in conn.sessions:
                        session.last_seen = time.monotonic()
                    continue
                head = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.header_timeout)
                request = _parse_request(head)
                if request is None:
                    writer.write(_format_response(_Response(400), "0"))
                    break
                length = request.content_length()
                if length is None:
                    writer.write(_format_response(_Response(400), request.headers.get("cseq", "0")))
                    break
                if length:
                    request.body = await reader.readexactly(length)
                cseq = request.headers.get("cseq", "0")
                try:
                    response = await self._dispatch(conn, request)
                except Exception:
                    log.exception("RTSP %s %s failed", request.method, request.url)
                    response = _Response(500)
                writer.write(_format_response(response, cseq))
                if response.after is not None:
                    response.after()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, TimeoutError):
            pass
        finally:
            self._connections.discard(conn)
            for session in list(conn.sessions):
                if session.transport == "tcp" or session.sender is None:
                    # Interleaved data has nowhere else to go; a UDP session that never
                    # played would only hold two sockets until the session timeout.
                    self._end_session(session, "connection closed")
                else:
                    session.conn.sessions.discard(session)  # UDP lives on until timeout/TEARDOWN
            writer.close()

    async def _dispatch(self, conn: _Connection, req: _Request) -> _Response:
        if req.method == "OPTIONS":
            return _Response(200, {"Public": ", ".join(SUPPORTED_METHODS)})
        if req.method not in SUPPORTED_METHODS:
            return _Response(501, {"Public": ", ".join(SUPPORTED_METHODS)})

        session: _Session | None = None
        session_header = req.headers.get("session")
        if session_header is not None:
            session = self._sessions.get(session_header.split(";")[0].strip())
            if session is None:
                return _Response(454)
            session.last_seen = time.monotonic()

        if req.method == "GET_PARAMETER":
            return _Response(200, _session_headers(session, self.session_timeout))
        if req.method == "TEARDOWN":
            if session is None:
                return _Response(454)
            self._end_session(session, "teardown")
            return _Response(200)
        if req.method == "PLAY":
            if session is None:
                return _Response(454)
            return await self._play(session)

        path, is_track = self._resolve(req.url)
        if path is None:
            return _Response(404)
        source = self._paths[path]
        if self.authorize is not None and not (req.method == "SETUP" and conn.grant_path == path):
            try:
                conn.grant = await self.authorize(req.method, req.url, req.headers, conn.peer_host, path)
            except Denied as denied:
                return _Response(denied.status, denied.headers)
            conn.grant_path = path
        if req.method == "SETUP" and session is None and self.max_sessions_per_connection is not None \
                and len(conn.sessions) >= self.max_sessions_per_connection:
            return _Response(453)
        if req.method == "DESCRIBE":
            return await self._describe(conn, req, path, source)
        return await self._setup(conn, req, path, source, session, is_track)

    def _resolve(self, url: str) -> tuple[str | None, bool]:
        """Map a request URL to a served path; True if it names the track rather than the stream."""
        path = unquote(urlsplit(url).path).strip("/")
        if path in self._paths:
            return path, False
        base, _, last = path.rpartition("/")
        if last == TRACK_CONTROL and base in self._paths:
            return base, True
        return None, False

    async def _describe(self, conn: _Connection, req: _Request, path: str, source: AccessUnitSource) -> _Response:
        if source.codec != "h264":
            return _Response(415)
        deadline = time.monotonic() + DESCRIBE_WAIT_S
        while len(params := source.parameter_sets()) < 2:
            if time.monotonic() > deadline:
                return _Response(503)
            await asyncio.sleep(0.1)
        sdp = (
            "v=0\r\n"
            f"o=- {random.getrandbits(32)} 1 IN IP4 {conn.local_host}\r\n"
            f"s=sharpeyes {path}\r\n"
            "c=IN IP4 0.0.0.0\r\n"
            "t=0 0\r\n"
            "a=tool:sharpeyes\r\n"
            "a=range:npt=now-\r\n"
            "a=control:*\r\n"
            f"m=video 0 RTP/AVP {PAYLOAD_TYPE}\r\n"
            f"a=rtpmap:{PAYLOAD_TYPE} H264/90000\r\n"
            f"a=fmtp:{PAYLOAD_TYPE} {sdp_fmtp(params[0], params[1])}\r\n"
            f"a=control:{TRACK_CONTROL}\r\n"
        ).encode("ascii")
        base = req.url.split("?", 1)[0].rstrip("/") + "/"
        return _Response(200, {"Content-Base": base, "Content-Type": "application/sdp"}, sdp)

    async def _setup(
        self,
        conn: _Connection,
        req: _Request,
        path: str,
        source: AccessUnitSource,
        session: _Session | None,
        is_track: bool,
    ) -> _Response:
        if session is not None:
            # One track per stream: a second SETUP on a session may only renew it.
            if session.path != path:
                return _Response(459)
            if session.sender is not None:
                return _Response(455)
            self._end_session(session)
        transport = _parse_transport(req.headers.get("transport", ""), self.enable_udp)
        if transport is None:
            return _Response(461)
        kind, ports = transport
        track_url = req.url.split("?", 1)[0] if is_track else req.url.split("?", 1)[0].rstrip("/") + "/" + TRACK_CONTROL
        session = _Session(
            id=secrets.token_hex(8),
            path=path,
            source=source,
            conn=conn,
            transport=kind,
            track_url=track_url,
        )
        if kind == "tcp":
            session.channel = ports[0]
            reply = f"RTP/AVP/TCP;unicast;interleaved={ports[0]}-{ports[0] + 1}"
        else:
            session.client_rtp = (conn.peer_host, ports[0])
            session.client_rtcp = (conn.peer_host, ports[1])
            await self._open_udp(session)
            reply = (
                f"RTP/AVP;unicast;client_port={ports[0]}-{ports[1]};"
                f"server_port={session.server_ports[0]}-{session.server_ports[1]}"
            )
        reply += f";ssrc={session.ssrc:08X}"
        session.grant = conn.grant
        self._sessions[session.id] = session
        conn.sessions.add(session)
        return _Response(200, {"Transport": reply, **_session_headers(session, self.session_timeout)})

    async def _open_udp(self, session: _Session) -> None:
        """Bind an even/odd RTP/RTCP port pair, as RFC 3550 asks."""
        loop = asyncio.get_running_loop()

        def touch() -> None:
            session.last_seen = time.monotonic()

        for _ in range(50):
            rtp_port = random.randrange(20000, 60000, 2)
            try:
                rtp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpPair(touch), local_addr=(self.host, rtp_port)
                )
            except OSError:
                continue
            try:
                rtcp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpPair(touch), local_addr=(self.host, rtp_port + 1)
                )
            except OSError:
                rtp.close()
                continue
            session.udp_rtp, session.udp_rtcp = rtp, rtcp
            session.server_ports = (rtp_port, rtp_port + 1)
            return
        raise OSError("no free UDP port pair")

    async def _play(self, session: _Session) -> _Response:
        headers = _session_headers(session, self.session_timeout)
        if session.sender is not None:
            return _Response(200, headers)  # already playing: a keepalive in effect
        subscription = session.source.subscribe()
        try:
            first = await asyncio.wait_for(anext(subscription), PLAY_WAIT_S)
        except (TimeoutError, StopAsyncIteration):
            subscription.close()
            return _Response(503)
        if session.id not in self._sessions:  # torn down while we waited
            subscription.close()
            return _Response(454)
        session.subscription = subscription
        headers["Range"] = "npt=now-"
        headers["RTP-Info"] = f"url={session.track_url};seq={session.seq};rtptime={session.rtp_timestamp(first)}"

        def start() -> None:
            if session.id in self._sessions:
                session.sender = asyncio.create_task(self._send(session, first), name=f"rtsp-send-{session.id}")
                if session.grant is not None:
                    session.grant.playing(session.id, session.path)

        return _Response(200, headers, after=start)

    async def _send(self, session: _Session, first: AccessUnit) -> None:
        """Send access units until the subscription or the connection ends."""
        assert session.subscription is not None
        try:
            au: AccessUnit | None = first
            iterator = aiter(session.subscription)
            cname = f"sharpeyes@{session.conn.local_host}"
            while au is not None:
                packets = session.rtp_packets(au)
                report = None
                if time.monotonic() - session.last_report >= RTCP_INTERVAL_S:
                    session.last_report = time.monotonic()
                    report = session.sender_report(au, cname)
                if session.transport == "tcp":
                    frames = b"".join(
                        _INTERLEAVED.pack(b"$", session.channel, len(p)) + p for p in packets
                    )
                    if report is not None:
                        frames += _INTERLEAVED.pack(b"$", session.channel + 1, len(report)) + report
                    session.bytes_sent += len(frames)
                    writer = session.conn.writer
                    if writer.is_closing():
                        break
                    writer.write(frames)
                    # Waiting here only delays this session; its bounded subscription
                    # queue absorbs the wait, and overflows to the next keyframe.
                    await writer.drain()
                else:
                    assert session.udp_rtp is not None and session.client_rtp is not None
                    for p in packets:
                        session.udp_rtp.sendto(p, session.client_rtp)
                        session.bytes_sent += len(p)
                    if report is not None and session.udp_rtcp is not None and session.client_rtcp is not None:
                        session.udp_rtcp.sendto(report, session.client_rtcp)
                au = await anext(iterator, None)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("RTSP session %s sender failed", session.id)
        finally:
            if session.transport == "tcp":
                self._end_session(session, "sender ended")

    def _end_session(self, session: _Session, reason: str = "ended") -> None:
        if self._sessions.pop(session.id, None) is not None and session.grant is not None and session.sender is not None:
            try:
                session.grant.ended(session.id, session.path, reason)
            except Exception:  # noqa: BLE001 - a failing audit hook must not keep the session's sockets
                log.exception("RTSP session %s on %s: the end hook failed", session.id, session.path)
        session.conn.sessions.discard(session)
        if session.subscription is not None:
            session.subscription.close()
        if session.sender is not None and session.sender is not asyncio.current_task():
            session.sender.cancel()
        for t in (session.udp_rtp, session.udp_rtcp):
            if t is not None:
                t.close()

    async def _reap(self) -> None:
        """End sessions that sent nothing (no request, no RTCP) within the session timeout."""
        while True:
            await asyncio.sleep(min(5.0, self.session_timeout / 4))
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if now - session.last_seen > self.session_timeout:
                    log.info("RTSP session %s on %s timed out", session.id, session.path)
                    if session.transport == "tcp":
                        session.conn.writer.close()
                    self._end_session(session, "timed out")


def _session_headers(session: _Session | None, timeout: float) -> dict[str, str]:
    return {} if session is None else {"Session": f"{session.id};timeout={int(timeout)}"}


def _parse_request(head: bytes) -> _Request | None:
    try:
        lines = head.decode("utf-8").split("\r\n")
        method, url, version = lines[0].split(" ")
    except (UnicodeDecodeError, ValueError):
        return None
    if not version.startswith("RTSP/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return _Request(method.upper(), url, headers)


def _format_response(response: _Response, cseq: str) -> bytes:
    lines = [f"RTSP/1.0 {response.status} {REASONS.get(response.status, 'Error')}", f"CSeq: {cseq}", "Server: sharpeyes"]
    lines += [f"{k}: {v}" for k, v in response.headers.items()]
    if response.body:
        lines.append(f"Content-Length: {len(response.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + response.body


def _parse_transport(value: str, enable_udp: bool) -> tuple[str, tuple[int, int]] | None:
    """The first acceptable transport spec: ("tcp", (rtp channel, rtcp channel)) or ("udp", client ports)."""
    for spec in value.split(","):
        parts = [p.strip() for p in spec.split(";") if p.strip()]
        if not parts:
            continue
        proto = parts[0].upper()
        params = {k.lower(): v for k, _, v in (p.partition("=") for p in parts[1:])}
        if "multicast" in params:
            continue
        try:
            if proto == "RTP/AVP/TCP":
                lo, _, hi = params.get("interleaved", "0-1").partition("-")
                return "tcp", (int(lo), int(hi or int(lo) + 1))
            if proto in ("RTP/AVP", "RTP/AVP/UDP") and enable_udp and "client_port" in params:
                lo, _, hi = params["client_port"].partition("-")
                return "udp", (int(lo), int(hi or int(lo) + 1))
        except ValueError:
            continue
    return None
