"""``RtspClient``: the native asyncio RTSP 1.0 client, as cameras speak it.

One client pulls one camera stream on the running event loop: many clients share one
loop (one thread), and none builds an ``av.Packet``. The flow is OPTIONS, DESCRIBE (with
Basic or Digest auth, and redirects), SETUP of the video track (and an AAC track, if
asked), PLAY on the aggregate control URL, then receiving until :meth:`RtspClient.stop`
(which sends TEARDOWN) or a failure (raised as :class:`RtspError`).

- Transport: TCP interleaved (default: what crosses NAT and firewalls) or UDP with RTCP
  (RTP through :class:`~ingest.rtp.reorder.ReorderBuffer`, sockets with 8 MiB buffers,
  receiver reports every 5 s).
- Keep-alive: GET_PARAMETER (OPTIONS if the camera does not list it) at half the session
  timeout, on either transport: cameras that time out sessions do so on TCP too.
- A stall (no RTP for ``stall_timeout``) is a failure, like a closed connection.
- RTCP sender reports map RTP time to the camera's own wall clock: access units carry
  it (``wallclock``), and the offset from our clock is kept in :attr:`RtspClient.stats`
  (``clock_offset_s``, and the largest seen): recorded, never used to move our anchor.

Every bound is explicit: response size (``framing``), redirects (3), the request
timeout, the reorder window. Passwords are never in a URL we log or send: credentials
go in ``Authorization`` only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable
from urllib.parse import unquote, urlsplit, urlunsplit

from ingest.access_unit import AccessUnit
from ingest.rtp.audio import AacDepacketizer, AudioFrame
from ingest.rtp.framing import FramingError, InterleavedDecoder, RtspText
from ingest.rtp.packet import RtpError, parse_rtp, ts_delta
from ingest.rtp.reorder import ReorderBuffer
from ingest.rtp.rtcp import SenderReport, parse_rtcp, receiver_report
from ingest.rtp.rtsp_auth import AuthError, Authenticator
from ingest.rtp.sdp import MediaDescription, parse_sdp, resolve_control
from ingest.rtp.udp import UdpReceiver, open_rtp_rtcp_pair
from ingest.rtp.video import H264Depacketizer, H265Depacketizer, VideoDepacketizer

log = logging.getLogger(__name__)

USER_AGENT = "sharpeyes"
MAX_REDIRECTS = 3
RR_INTERVAL = 5.0
DEFAULT_SESSION_TIMEOUT = 60
VIDEO_ENCODINGS = {"H264": "h264", "H265": "h265"}


class RtspError(Exception):
    """Why a pull ended. ``kind``: unauthorized, not_found, refused, stalled, closed, protocol, unsupported."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclass
class RtspResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), default)

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]


def parse_response(msg: RtspText) -> RtspResponse:
    lines = msg.head.decode("utf-8", "replace").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("RTSP/") or not parts[1].isdigit():
        raise RtspError("protocol", f"not an RTSP status line: {lines[0][:80]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return RtspResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, msg.body)


@dataclass
class ClientStats:
    """What the status shows about a native pull."""

    transport: str = "tcp"
    packets: int = 0
    lost_packets: int = 0  # UDP: given up by the reorder window; TCP: sequence gaps
    reordered: int = 0
    late: int = 0
    bad_packets: int = 0  # not RTP at all
    errors: int = 0  # depacketiser errors (loss events, malformed payloads)
    dropped_frames: int = 0
    keepalives: int = 0
    clock_offset_s: float | None = None  # camera clock minus ours, from the last RTCP SR
    clock_offset_max_s: float = 0.0
    rcvbuf: int = 0


@dataclass
class _Track:
    media: MediaDescription
    channel: int
    handle: Callable[[bytes], None] = field(repr=False, default=lambda data: None)
    reorder: ReorderBuffer | None = None
    sr: SenderReport | None = None
    ssrc: int | None = None
    highest_seq: int = 0
    rtp_rx: UdpReceiver | None = None
    rtcp_rx: UdpReceiver | None = None
    server_rtcp: tuple[str, int] | None = None


class _Connection(asyncio.Protocol):
    """The TCP connection: RTSP answers resolve futures by CSeq; ``$`` frames go to tracks."""

    def __init__(self, client: RtspClient) -> None:
        self.client = client
        self.decoder = InterleavedDecoder()
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[RtspResponse]] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Read by the receive loop when it runs; retrieved here too so a close during set-up
        # (already raised by the pending request) is not reported as never retrieved.
        self.closed.add_done_callback(lambda f: f.cancelled() or f.exception())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            buf, items = self.decoder.feed_spans(data)
        except FramingError as exc:
            self._close(RtspError("protocol", f"the camera's RTSP stream cannot be framed: {exc}"))
            return
        if items:
            self.client._on_interleaved(buf, items, self)

    def _message(self, msg: RtspText) -> None:
        if msg.head.startswith(b"RTSP/"):
            try:
                resp = parse_response(msg)
            except RtspError as exc:
                self._close(exc)
                return
            cseq = resp.header("cseq")
            fut = self.pending.pop(int(cseq), None) if cseq.isdigit() else None
            if fut is not None and not fut.done():
                fut.set_result(resp)
            return
        # A request from the camera (OPTIONS as its own keep-alive, SET_PARAMETER, ANNOUNCE): say OK.
        req_cseq = next((line.split(b":", 1)[1].strip() for line in msg.head.split(b"\r\n")
                         if line.lower().startswith(b"cseq:")), b"0")
        if self.transport is not None:
            self.transport.write(b"RTSP/1.0 200 OK\r\nCSeq: " + req_cseq + b"\r\n\r\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self._close(RtspError("closed", "the camera closed the RTSP connection"
                              + (f" ({exc})" if exc else "")))

    def _close(self, err: RtspError) -> None:
        if not self.closed.done():
            self.closed.set_exception(err)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(err)
        self.pending.clear()
        if self.transport is not None:
            self.transport.close()


class RtspClient:
    """Pulls one RTSP stream; ``on_video`` gets whole access units, ``on_audio`` AAC frames."""

    def __init__(self, url: str, *, on_video: Callable[[AccessUnit], None],
                 on_audio: Callable[[AudioFrame], None] | None = None, transport: str = "tcp",
                 connect_timeout: float = 10.0, stall_timeout: float = 10.0, request_timeout: float = 10.0,
                 camera_id: str = "", clock: Callable[[], float] = time.time,
                 keepalive_interval: float | None = None, receiver_reports: bool = True) -> None:
        """``keepalive_interval``: seconds between keep-alives; default half the session timeout."""
        if transport not in ("tcp", "udp"):
            raise ValueError(f"RTSP transport is tcp or udp, not {transport!r}")
        parts = urlsplit(url)
        if parts.scheme.lower() != "rtsp" or not parts.hostname:
            raise ValueError(f"camera {camera_id}: not an rtsp:// URL")
        self.camera_id = camera_id
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else ""
        self.url = _strip_credentials(url)
        self.on_video = on_video
        self.on_audio = on_audio
        self.transport = transport
        self.connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self.request_timeout = request_timeout
        self.clock = clock
        self.keepalive_interval = keepalive_interval
        self.receiver_reports = receiver_reports
        self.stats = ClientStats(transport=transport)
        self.video: VideoDepacketizer | None = None
        self.audio: AacDepacketizer | None = None
        self.audio_media: MediaDescription | None = None
        self.sdp_text = ""
        self._channels: dict[int, Callable[[bytes], None]] = {}
        self._video_channel = -1  # TCP: the interleaved channel of video RTP (the hot path)
        self._video_track: _Track | None = None
        self._tracks: list[_Track] = []
        self._conn: _Connection | None = None
        self._cseq = 0
        self._session: str | None = None
        self._session_timeout = DEFAULT_SESSION_TIMEOUT
        self._public: set[str] = set()
        self._auth = Authenticator(self.user, self.password) if self.user is not None else None
        self._stop = asyncio.Event()
        self._last_rtp = 0.0
        self._host = ""

    # -- public ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to send TEARDOWN and return."""
        self._stop.set()

    async def run(self) -> None:
        """Connect, set up, play, and receive until :meth:`stop`; raise :class:`RtspError` on failure."""
        try:
            await self._start()
            await self._receive()
        finally:
            await self._close()

    # -- set-up ------------------------------------------------------------------------
    async def _start(self) -> None:
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            await self._connect(url)
            resp = await self._request("OPTIONS", url, allow={301, 302, 303, 305, 307, 404, 405, 501})
            if resp.status < 300:
                self._public = {m.strip().upper() for m in resp.header("public").split(",") if m.strip()}
            if resp.status in (301, 302, 303, 305, 307):
                url = self._redirect(resp)
                continue
            resp = await self._request("DESCRIBE", url, {"Accept": "application/sdp"},
                                       allow={301, 302, 303, 305, 307})
            if resp.status >= 300:
                url = self._redirect(resp)
                continue
            break
        else:
            raise RtspError("protocol", f"camera {self.camera_id}: more than {MAX_REDIRECTS} redirects")
        self.url = url
        base = resp.header("content-base") or resp.header("content-location") or url
        self.sdp_text = resp.body.decode("utf-8", "replace")
        sdp = parse_sdp(self.sdp_text)
        video = next((m for m in sdp.media if m.media == "video" and m.encoding in VIDEO_ENCODINGS), None)
        if video is None:
            found = ", ".join(f"{m.media} {m.encoding or m.payload_type}" for m in sdp.media) or "no media"
            raise RtspError("unsupported", f"camera {self.camera_id}: no H.264 or H.265 video in the stream ({found}); "
                            "set the camera to H.264 or H.265")
        self.video = _video_depacketizer(video)
        tracks = [video]
        if self.on_audio is not None:
            audio = next((m for m in sdp.media if m.media == "audio" and m.encoding == "MPEG4-GENERIC"
                          and m.fmtp.get("mode", "").lower() in ("aac-hbr", "aac-lbr")), None)
            if audio is not None:
                try:
                    self.audio = AacDepacketizer(audio.fmtp, audio.clock_rate or 48000)
                    self.audio_media = audio
                    tracks.append(audio)
                except ValueError:
                    log.warning("camera %s: AAC track with fmtp we cannot read; recording video only", self.camera_id)
        for i, media in enumerate(tracks):
            await self._setup(resolve_control(base, media.control), media, 2 * i)
        self.video.wallclock = self._wallclock_of(self._tracks[0])
        play_url = resolve_control(base, sdp.control) if sdp.control else base
        await self._request("PLAY", play_url, {"Range": "npt=0.000-"})
        self._last_rtp = time.monotonic()

    async def _connect(self, url: str) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 554
        self._host = host
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(lambda: _Connection(self), host, port),
                                             self.connect_timeout)
        except asyncio.TimeoutError as exc:
            raise RtspError("refused", f"camera {self.camera_id}: timed out connecting to {host}:{port}; "
                            "check the network path") from exc
        except ConnectionRefusedError as exc:
            raise RtspError("refused", f"camera {self.camera_id}: connection refused at {host}:{port}; "
                            "is the camera on and the port right?") from exc
        except OSError as exc:
            raise RtspError("refused", f"camera {self.camera_id}: cannot connect to {host}:{port}: {exc}") from exc
        self._conn = conn

    def _redirect(self, resp: RtspResponse) -> str:
        location = resp.header("location")
        if not location.lower().startswith("rtsp://"):
            raise RtspError("protocol",
                            f"camera {self.camera_id}: redirect ({resp.status}) without an rtsp:// Location")
        log.info("camera %s: redirected to %s", self.camera_id, _strip_credentials(location))
        return _strip_credentials(location)

    async def _setup(self, url: str, media: MediaDescription, channel: int) -> None:
        track = _Track(media, channel)
        is_video = not self._tracks
        if self.transport == "udp":
            track.reorder = ReorderBuffer()
            sock = self._conn.transport.get_extra_info("sockname") if self._conn and self._conn.transport else None
            local = sock[0] if sock else "0.0.0.0"
            track.rtp_rx, track.rtcp_rx = await open_rtp_rtcp_pair(
                local, partial(self._on_udp_rtp, track), partial(self._on_udp_rtcp, track))
            if is_video:
                self.stats.rcvbuf = track.rtp_rx.rcvbuf
            spec = f"RTP/AVP;unicast;client_port={track.rtp_rx.port}-{track.rtcp_rx.port}"
        else:
            spec = f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}"
        self._tracks.append(track)
        headers = {"Transport": spec}
        resp = await self._request("SETUP", url, headers, allow={461})
        if resp.status == 461:
            raise RtspError("unsupported", f"camera {self.camera_id}: the camera refuses {self.transport.upper()} "
                            f"transport (461); set rtsp_transport to {'udp' if self.transport == 'tcp' else 'tcp'}",
                            461)
        session = resp.header("session")
        if session and self._session is None:
            sid, _, params = session.partition(";")
            self._session = sid.strip()
            for p in params.split(";"):
                k, _, v = p.strip().partition("=")
                if k.lower() == "timeout" and v.strip().isdigit():
                    self._session_timeout = max(1, int(v))
        transport = {k.strip().lower(): v.strip() for k, _, v in
                     (p.partition("=") for p in resp.header("transport").split(";"))}
        if self.transport == "tcp":
            rtp_ch, _, rtcp_ch = transport.get("interleaved", f"{channel}-{channel + 1}").partition("-")
            rtp_c = int(rtp_ch) if rtp_ch.isdigit() else channel
            rtcp_c = int(rtcp_ch) if rtcp_ch.isdigit() else rtp_c + 1
            self._bind_tcp_track(track, rtp_c, rtcp_c, is_video)
        else:
            track.handle = partial(self._video_rtp if is_video else self._audio_rtp, track)
            ports = transport.get("server_port", "")
            _, _, rtcp_port = ports.partition("-")
            if rtcp_port.isdigit():
                track.server_rtcp = (transport.get("source", self._host), int(rtcp_port))

    def _bind_tcp_track(self, track: _Track, rtp_channel: int, rtcp_channel: int, is_video: bool) -> None:
        """Route the interleaved channels the camera confirmed in SETUP to ``track``."""
        self._channels[rtp_channel] = partial(self._video_rtp if is_video else self._audio_rtp, track)
        if is_video:
            self._video_channel = rtp_channel
            self._video_track = track
        self._channels[rtcp_channel] = partial(self._on_rtcp, track)

    # -- requests ----------------------------------------------------------------------
    async def _request(self, method: str, url: str, headers: dict[str, str] | None = None,
                       allow: set[int] = frozenset()) -> RtspResponse:  # type: ignore[assignment]
        for attempt in range(2):
            resp = await self._send(method, url, headers or {})
            if resp.status == 401 and attempt == 0:
                if self._auth is None:
                    raise RtspError("unauthorized", f"camera {self.camera_id}: the camera asks for credentials "
                                    "(RTSP 401); put the user and password in the URL", 401)
                try:
                    self._auth.challenge(resp.all("www-authenticate"))
                except AuthError as exc:
                    raise RtspError("unauthorized", f"camera {self.camera_id}: {exc}; check the user and password",
                                    401) from exc
                continue
            break
        if resp.status in (401, 403):
            raise RtspError("unauthorized", f"camera {self.camera_id}: the camera refused the credentials "
                            f"(RTSP {resp.status}); check the user and password in the URL", resp.status)
        if resp.status == 404:
            if 404 in allow:
                return resp
            raise RtspError("not_found", f"camera {self.camera_id}: the camera has no stream at that path "
                            "(RTSP 404); check the URL path", 404)
        if resp.status >= 300 and resp.status not in allow:
            raise RtspError("protocol", f"camera {self.camera_id}: {method} answered {resp.status} {resp.reason}",
                            resp.status)
        return resp

    async def _send(self, method: str, url: str, headers: dict[str, str]) -> RtspResponse:
        conn = self._conn
        if conn is None or conn.transport is None or conn.closed.done():
            raise RtspError("closed", f"camera {self.camera_id}: the RTSP connection is closed")
        self._cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self._cseq}", f"User-Agent: {USER_AGENT}"]
        if self._session is not None:
            lines.append(f"Session: {self._session}")
        if self._auth is not None:
            auth = self._auth.header(method, url)
            if auth:
                lines.append(f"Authorization: {auth}")
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        fut: asyncio.Future[RtspResponse] = asyncio.get_running_loop().create_future()
        conn.pending[self._cseq] = fut
        conn.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        try:
            return await asyncio.wait_for(fut, self.request_timeout)
        except asyncio.TimeoutError as exc:
            conn.pending.pop(self._cseq, None)
            raise RtspError("stalled", f"camera {self.camera_id}: no answer to {method} in "
                            f"{self.request_timeout:.0f} s") from exc

    # -- receiving ---------------------------------------------------------------------
    async def _receive(self) -> None:
        assert self._conn is not None
        keepalive_every = self.keepalive_interval or self._session_timeout / 2
        next_keepalive = time.monotonic() + keepalive_every
        next_rr = time.monotonic() + RR_INTERVAL
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        closed: asyncio.Future[Any] = self._conn.closed
        try:
            while not self._stop.is_set():
                done, _ = await asyncio.wait({stop, closed}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    closed.result()  # raises the failure
                now = time.monotonic()
                if now - self._last_rtp > self.stall_timeout:
                    raise RtspError("stalled", f"camera {self.camera_id}: no data for {self.stall_timeout:.0f} s "
                                    "(stalled); reconnecting")
                if now >= next_keepalive:
                    next_keepalive = now + keepalive_every
                    asyncio.ensure_future(self._keepalive())
                if self.transport == "udp" and self.receiver_reports and now >= next_rr:
                    next_rr = now + RR_INTERVAL
                    self._send_receiver_reports()
        finally:
            stop.cancel()

    async def _keepalive(self) -> None:
        method = "GET_PARAMETER" if "GET_PARAMETER" in self._public else "OPTIONS"
        try:
            await self._request(method, self.url, allow={404, 405, 451, 501})
            self.stats.keepalives += 1
        except RtspError as exc:
            log.warning("camera %s: keep-alive failed: %s", self.camera_id, exc)

    def _on_interleaved(self, buf: bytes, items: list[int | RtspText], conn: _Connection) -> None:
        """One TCP read, framed (``InterleavedDecoder.feed_spans``): video RTP goes straight to the
        depacketiser from the read buffer; the counters are updated once a read, not once a packet."""
        video_ch = self._video_channel
        dep = self.video
        on_video = self.on_video
        channels = self._channels
        packets = bad = 0
        i, n = 0, len(items)
        while i < n:
            ch = items[i]
            if type(ch) is not int:
                conn._message(ch)  # type: ignore[arg-type]
                i += 1
                continue
            start, end = items[i + 1], items[i + 2]
            i += 3
            if ch == video_ch and dep is not None:
                packets += 1
                try:
                    au = dep.push_rtp(buf, start, end)  # type: ignore[arg-type]
                except RtpError:
                    bad += 1
                    continue
                if au is not None:
                    on_video(au)
            else:
                handler = channels.get(ch)  # type: ignore[call-overload]
                if handler is not None:
                    handler(buf[start:end])  # type: ignore[index,misc]
        if packets and dep is not None and self._video_track is not None:
            self._last_rtp = time.monotonic()
            stats = self.stats
            stats.packets += packets
            stats.bad_packets += bad
            track = self._video_track
            track.highest_seq = dep.last_sequence
            track.ssrc = dep.ssrc
            stats.lost_packets = dep.lost_packets
            stats.errors = dep.errors
            stats.dropped_frames = dep.dropped_frames

    def _video_rtp(self, track: _Track, data: bytes) -> None:
        """One video RTP packet: a UDP datagram (through the reorder window) or a TCP frame."""
        self._last_rtp = time.monotonic()
        stats = self.stats
        stats.packets += 1
        dep = self.video
        assert dep is not None
        reorder = track.reorder
        try:
            if reorder is None:
                au = dep.push_rtp(data)
                if au is not None:
                    self.on_video(au)
                stats.lost_packets = dep.lost_packets
            elif len(data) >= 12 and data[0] == 0x80 and reorder.take_in_order(seq := (data[2] << 8) | data[3]):
                # In order with nothing held (nearly every packet): no packet object for the window.
                track.highest_seq = seq
                au = dep.push_rtp(data)
                if au is not None:
                    self.on_video(au)
            else:
                packet = parse_rtp(data)
                track.highest_seq = packet.sequence
                for p in reorder.push(packet):
                    au = dep.push(p)
                    if au is not None:
                        self.on_video(au)
        except RtpError:
            stats.bad_packets += 1
            return
        finally:
            track.ssrc = dep.ssrc
        if reorder is not None:
            stats.lost_packets = reorder.lost
            stats.reordered = reorder.reordered
            stats.late = reorder.late
        stats.errors = dep.errors
        stats.dropped_frames = dep.dropped_frames

    def _audio_rtp(self, track: _Track, data: bytes) -> None:
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.stats.bad_packets += 1
            return
        track.ssrc = packet.ssrc
        track.highest_seq = packet.sequence
        dep = self.audio
        if dep is None or self.on_audio is None:
            return
        packets = [packet] if track.reorder is None else track.reorder.push(packet)
        for p in packets:
            for frame in dep.push(p):
                self.on_audio(frame)

    def _on_udp_rtp(self, track: _Track, data: bytes, addr: tuple[str, int]) -> None:
        track.handle(data)

    def _on_udp_rtcp(self, track: _Track, data: bytes, addr: tuple[str, int]) -> None:
        self._on_rtcp(track, data)

    def _on_rtcp(self, track: _Track, data: bytes) -> None:
        reports, bye = parse_rtcp(data)
        for sr in reports:
            track.sr = sr
            if track is self._tracks[0]:
                offset = sr.wallclock - self.clock()
                self.stats.clock_offset_s = offset
                if abs(offset) > abs(self.stats.clock_offset_max_s):
                    self.stats.clock_offset_max_s = offset
        if bye and track is self._tracks[0] and self._conn is not None:
            self._conn._close(RtspError("closed", f"camera {self.camera_id}: the camera ended the stream (RTCP BYE)"))

    def _wallclock_of(self, track: _Track) -> Callable[[int], float | None]:
        rate = track.media.clock_rate or 90000

        def wallclock(ts: int) -> float | None:
            sr = track.sr
            return None if sr is None else sr.wallclock + ts_delta(sr.rtp_timestamp, ts) / rate
        return wallclock

    def _send_receiver_reports(self) -> None:
        for track in self._tracks:
            if track.rtcp_rx is None or track.server_rtcp is None or track.ssrc is None:
                continue
            lost = track.reorder.lost if track.reorder is not None else 0
            last_sr = track.sr.ntp_middle if track.sr is not None else 0
            track.rtcp_rx.send(receiver_report(0x5E5E0000 | track.channel, track.ssrc, cumulative_lost=lost,
                                               highest_seq=track.highest_seq, last_sr=last_sr), track.server_rtcp)

    # -- tear-down ---------------------------------------------------------------------
    async def _close(self) -> None:
        conn = self._conn
        if conn is not None and self._session is not None and not conn.closed.done():
            try:
                await asyncio.wait_for(self._send("TEARDOWN", self.url, {}), 2.0)
            except (RtspError, asyncio.TimeoutError, OSError):
                pass  # the camera may already be gone; the session then times out on its side
        if conn is not None and conn.transport is not None:
            conn.transport.close()
        for track in self._tracks:
            for rx in (track.rtp_rx, track.rtcp_rx):
                if rx is not None:
                    rx.close()


def _video_depacketizer(media: MediaDescription) -> VideoDepacketizer:
    if VIDEO_ENCODINGS[media.encoding] == "h264":
        return H264Depacketizer(media.fmtp.get("sprop-parameter-sets"))
    return H265Depacketizer(media.fmtp.get("sprop-vps"), media.fmtp.get("sprop-sps"), media.fmtp.get("sprop-pps"))


def _strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
