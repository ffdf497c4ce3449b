"""``GbMediaSession``: records one GB/T 28181 channel: INVITE, PS over RTP, the same segmenter and hub.

It is a ``CameraSession`` whose pull is a GB/T 28181 media session instead of an RTSP pull, so
gaps, backoff, status, taps (live hub, snapshots, motion) and shutdown are the RTSP camera's.
One pull (``_pull``, on the session thread):

1. The device must be registered and alive (``GbLink.devices``): else the gap reason is
   ``device_offline``.
2. A port of ``GB_RTP_PORTS`` is bound for the session (UDP, or TCP for ``tcp-passive``), and
   the device is INVITEd (``s=Play``, our SDP on ``GB_MEDIA_HOST``). A final answer other
   than 2xx, or none (a SIP timeout), is ``invite_refused``, with the status in the message.
3. ``tcp-active``: we connect to the address in the device's answer. Then ACK (by the SIP
   endpoint) and media: RTP payloads are queued by the receiver on the loop and demuxed here
   (``PsDemuxer``). No media for ``stall_timeout`` (at the start or later) is
   ``media_timeout``: the message names our SDP address and port, the usual culprits (NAT, a
   firewall, a wrong ``GB_MEDIA_HOST``).
4. On every exit, BYE (if the dialog is up), and the port is released. ``CameraSession._run``
   then re-INVITEs on its backoff schedule.

Access units become ``av.Packet`` objects (90 kHz) with a stream template made once per codec
by FFmpeg's own mpeg demuxer from one PS pack of ours (``packet_template``), so the segmenter and the
hub take them exactly as they take an RTSP camera's. G.711 audio is not recorded (as for RTSP
cameras, docs/recording.md): it is counted, and the status names the codec.
"""

from __future__ import annotations

import asyncio
import io
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Coroutine, Iterator, Protocol, TypeVar

import av

from config.cameras import Camera, StreamName
from ingest.gb28181.media.receiver import MediaReceiver, PortPool
from ingest.gb28181.media.sdp import MediaTransport, SdpError, SessionName, make_ssrc, offer, parse_answer
from ingest.gb28181.ps import AudioFrame, PsDemuxer, VideoFrame
from ingest.gb28181.psmux import PsMuxer
from ingest.gb28181.sip import Dialog, Peer, SipEndpoint
from ingest.recording.segmenter import Clock, Segmenter
from ingest.recording.session import CameraSession, SessionFailure
from storage.db.schema import GapRef
from storage.index.segments import SegmentIndex

log = logging.getLogger(__name__)

T = TypeVar("T")
TIME_BASE_90K = Fraction(1, 90000)
_FFMPEG_CODEC = {"h264": "h264", "h265": "hevc"}


class DeviceDirectory(Protocol):
    """Where a device is, as the registrar knows it."""

    def peer(self, device_id: str) -> Peer | None:
        """The address its REGISTER came from (requests go there: NAT); None when offline."""

    def offline_reason(self, device_id: str) -> str:
        """Why ``peer`` is None, for the gap row and the status."""

    def record_invite(self, device_id: str, *, channel: str, outcome: str, reason: str = "") -> None:
        """Keep the outcome of the last INVITE of a channel (``gb doctor`` shows it)."""


@dataclass
class InviteOutcome:
    """The last INVITE of a session, for the status and ``gb doctor``."""

    at_us: int
    status: int
    reason: str
    transport: str = ""
    port: int = 0
    answer: str = ""  # "host:port" from the device's SDP


@dataclass
class GbLink:
    """What media sessions share: the SIP endpoint and its loop, the devices, the ports."""

    loop: asyncio.AbstractEventLoop
    endpoint: SipEndpoint
    devices: DeviceDirectory
    our_id: str
    domain: str
    media_host: str
    ports: PortPool
    bind_host: str = "0.0.0.0"
    default_transport: MediaTransport = "udp"
    transports: dict[str, MediaTransport] = field(default_factory=dict)  # per device id
    invite_timeout: float = 10.0
    _ssrc_seq: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def transport_for(self, device_id: str) -> MediaTransport:
        """The device's own media transport (``gb device add --media-transport``), else the default."""
        if device_id in self.transports:
            return self.transports[device_id]
        own = getattr(self.devices, "media_transport", None)
        chosen = own(device_id) if own is not None else ""
        return chosen if chosen in ("udp", "tcp-passive", "tcp-active") else self.default_transport  # type: ignore[return-value]

    def next_ssrc(self, history: bool = False) -> str:
        with self._lock:
            self._ssrc_seq = self._ssrc_seq % 9999 + 1
            return make_ssrc(self.domain, self._ssrc_seq, history)

    def run(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


def packet_template(frame: VideoFrame) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """A video stream of the keyframe's codec and size, with a 90 kHz time base: what the
    segmenter copies its MP4 track from and the hub reads the codec from."""
    mux = PsMuxer(frame.codec)
    au = frame.access_unit()
    data = mux.mux(au.nals, 0, True) + mux.mux(au.nals, 3600, True)
    container = av.open(io.BytesIO(data), format="mpeg", mode="r")
    if not container.streams.video:
        container.close()
        raise SessionFailure("unsupported", "unsupported", "the device's first keyframe does not decode")
    return container, container.streams.video[0]


async def invite_media(link: GbLink, channel_id: str, device_id: str, peer: Peer, transport: MediaTransport,
                       receiver: MediaReceiver, *, clock: Clock, connect_timeout: float,
                       session: SessionName = "Play", start_s: int = 0, end_s: int = 0,
                       on_outcome: Callable[[InviteOutcome], None] = lambda outcome: None) -> Dialog:
    """Bind ``receiver``'s port, INVITE ``channel_id`` for ``session`` and return the dialog once
    media can flow (ACK sent; for TCP active, connected). Failures are ``SessionFailure`` with
    the gap reason: ``invite_refused`` (an error answer, none, a bad SDP) or ``media_timeout``."""
    port = await receiver.start()
    ssrc = link.next_ssrc(history=session != "Play")
    receiver.expected_ssrc = int(ssrc)
    sdp = offer(session=session, our_id=link.our_id, media_host=link.media_host, port=port,
                transport=transport, ssrc=ssrc, channel_id=channel_id, start_s=start_s, end_s=end_s)
    uri = f"sip:{channel_id}@{device_id[:10]}"
    result = await link.endpoint.invite(peer, uri, sdp=sdp, subject=f"{channel_id}:{ssrc},{link.our_id}:0",
                                        timeout=link.invite_timeout)
    resp = result.response
    outcome = InviteOutcome(clock(), resp.status, resp.reason, transport, port)
    on_outcome(outcome)
    if result.dialog is None:
        what = "did not answer" if resp.status == 408 else f"answered {resp.status} {resp.reason}"
        raise SessionFailure("offline", "invite_refused",
                             f"camera {channel_id}: device {device_id} {what} to our INVITE (s={session}, "
                             f"{transport}); check that the channel exists and takes {transport}")
    dialog = result.dialog
    try:
        answer = parse_answer(dialog.remote_sdp)
    except SdpError as exc:
        await dialog.bye("bad SDP answer")
        raise SessionFailure("offline", "invite_refused", f"camera {channel_id}: {exc}") from exc
    outcome.answer = f"{answer.host}:{answer.port}"
    if answer.ssrc is not None and answer.ssrc != receiver.expected_ssrc:
        # A lower platform chose its own SSRC in its 200 OK: expect that one (still not enforced).
        receiver.expected_ssrc = answer.ssrc
    if transport == "tcp-active":
        host = answer.host or peer.host
        try:
            await receiver.connect(host, answer.port, connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            await dialog.bye("media connect failed")
            raise SessionFailure("offline", "media_timeout",
                                 f"camera {channel_id}: could not connect to the device's media port "
                                 f"{host}:{answer.port} (TCP active): {exc}") from exc
    return dialog


def received_video(payloads: queue.SimpleQueue[bytes | None], dialog: Dialog, media_timeout: float
                   ) -> Iterator[VideoFrame]:
    """The video frames of a past-range session (``s=Playback``, ``s=Download``) as they arrive:
    PS demuxed from ``payloads`` (``None``, a loss, resynchronises the demuxer), audio left out.
    Ends when nothing came for ``media_timeout`` (what came is kept) or when the device has ended
    the dialog (its "file finished") and all it sent was read. Blocking: a worker thread's."""
    demux = PsDemuxer()
    while True:
        try:
            item = payloads.get(timeout=media_timeout)
        except queue.Empty:
            return
        if item is None:
            demux.lost()
            continue
        for frame in demux.feed(item):
            if isinstance(frame, VideoFrame):
                yield frame
        if dialog.ended.is_set() and payloads.empty():
            return


def to_packet(frame: VideoFrame, video: av.video.stream.VideoStream) -> av.Packet:
    """One PS access unit as the ``av.Packet`` the segmenter and the hub take (90 kHz, on ``video``)."""
    packet = av.Packet(frame.data)
    packet.pts = frame.pts_90k
    packet.dts = frame.pts_90k
    packet.time_base = TIME_BASE_90K
    packet.stream = video
    packet.is_keyframe = frame.keyframe
    return packet


class GbMediaSession(CameraSession):
    """Records one GB/T 28181 channel; ``device_id`` is the device that has it."""

    def __init__(self, camera: Camera, stream: StreamName, segmenter: Segmenter, index: SegmentIndex, *,
                 link: GbLink, device_id: str, clock: Clock, connect_timeout: float = 10.0,
                 stall_timeout: float = 10.0, initial_gap: tuple[int, str] | None = None,
                 adopt_gap: tuple[GapRef, str] | None = None):
        self.link = link
        self.device_id = device_id
        super().__init__(camera, stream, segmenter, index, clock=clock, connect_timeout=connect_timeout,
                         stall_timeout=stall_timeout, initial_gap=initial_gap, adopt_gap=adopt_gap)
        self.last_invite: InviteOutcome | None = None
        self.demux_stats: dict[str, int | str | None] = {}
        self.receiver_stats: dict[str, int | str | None] = {}
        self.audio_dropped = 0

    def source_url(self) -> str:
        return f"gb28181://{self.device_id}/{self.camera.id}"

    # -- one pull --------------------------------------------------------------------

    def _pull(self) -> None:
        link = self.link
        cam = self.camera.id
        peer = link.devices.peer(self.device_id)
        if peer is None:
            raise SessionFailure("offline", "device_offline",
                                 f"camera {cam}: device {self.device_id} is offline "
                                 f"({link.devices.offline_reason(self.device_id)}); inviting again when it is back")
        transport = link.transport_for(self.device_id)
        payloads: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        receiver = MediaReceiver(cam, transport, link.bind_host, link.ports, payloads.put)
        dialog: Dialog | None = None
        try:
            dialog = self._wait(link.run(self._invite(peer, transport, receiver)), self.connect_timeout + 40)
            self._record_invite("ok", f"200 OK; media on port {receiver.port} ({transport})")
            self._receive(payloads, receiver, dialog)
        except SessionFailure as failure:
            if failure.reason in ("invite_refused", "media_timeout"):
                self._record_invite(failure.reason, str(failure))
            raise
        finally:
            self._wait(link.run(self._hang_up(dialog, receiver)), 10, quiet=True)

    def _record_invite(self, outcome: str, reason: str) -> None:
        try:
            self.link.devices.record_invite(self.device_id, channel=self.camera.id, outcome=outcome, reason=reason)
        except Exception:  # noqa: BLE001 - the index being down must not stop recording
            log.exception("camera %s: could not record the INVITE outcome", self.camera.id)

    def _wait(self, fut: Future[T], timeout: float, quiet: bool = False) -> T:
        try:
            return fut.result(timeout)
        except SessionFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a classified one
            fut.cancel()
            if quiet:
                log.info("camera %s: ending the GB session: %s", self.camera.id, exc)
                return None  # type: ignore[return-value]
            raise SessionFailure("offline", "invite_refused",
                                 f"camera {self.camera.id}: INVITE to device {self.device_id} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc

    async def _invite(self, peer: Peer, transport: MediaTransport, receiver: MediaReceiver) -> Dialog:
        def record(outcome: InviteOutcome) -> None:
            self.last_invite = outcome

        return await invite_media(self.link, self.camera.id, self.device_id, peer, transport, receiver,
                                  clock=self.clock, connect_timeout=self.connect_timeout, on_outcome=record)

    async def _hang_up(self, dialog: Dialog | None, receiver: MediaReceiver) -> None:
        try:
            if dialog is not None and not dialog.ended.is_set():
                await dialog.bye("recording stopped")
        finally:
            receiver.close()

    def _receive(self, payloads: queue.SimpleQueue[bytes | None], receiver: MediaReceiver, dialog: Dialog) -> None:
        cam = self.camera.id
        demux = PsDemuxer()
        template: tuple[av.container.InputContainer, av.video.stream.VideoStream] | None = None
        got_media = False
        self._meter.reset()
        try:
            while not self._stop.is_set():
                try:
                    item = payloads.get(timeout=self.stall_timeout)
                except queue.Empty:
                    port = receiver.port
                    if not got_media:
                        message = (f"camera {cam}: the device accepted the INVITE but sent no media to "
                                   f"{self.link.media_host}:{port} ({receiver.transport}) within "
                                   f"{self.stall_timeout:.0f} s; check GB_MEDIA_HOST, NAT and firewalls")
                    else:
                        message = f"camera {cam}: no media for {self.stall_timeout:.0f} s; inviting again"
                    raise SessionFailure("offline", "media_timeout", message) from None
                if dialog.ended.is_set():
                    raise SessionFailure("offline", "network",
                                         f"camera {cam}: the device ended the session ({dialog.end_reason})")
                if item is None:
                    demux.lost()
                    continue
                got_media = True
                for frame in demux.feed(item):
                    if isinstance(frame, AudioFrame):
                        self.audio_dropped += 1
                        self.status.audio_codec = frame.codec
                        continue
                    if template is None or self._codec_of(template) != frame.codec:
                        if not frame.keyframe:
                            continue
                        template = self._start(frame, template)
                    self._on_frame(frame, template[1])
                self._publish_stats(demux, receiver)
        finally:
            self._publish_stats(demux, receiver)
            if template is not None:
                template[0].close()

    @staticmethod
    def _codec_of(template: tuple[av.container.InputContainer, av.video.stream.VideoStream]) -> str:
        return "h265" if template[1].codec_context.name == "hevc" else "h264"

    def _start(self, frame: VideoFrame, old: tuple[av.container.InputContainer, av.video.stream.VideoStream] | None
               ) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
        """The first keyframe (or the first after a codec change): a new input for the segmenter."""
        if old is not None:
            log.info("camera %s: the device switched to %s; new segment", self.camera.id, frame.codec)
            self.segmenter.end_run()
            old[0].close()
        container, video = packet_template(frame)
        self.status.codec = frame.codec
        self.status.width = video.codec_context.width
        self.status.height = video.codec_context.height
        self.segmenter.start_input(video, None)
        return container, video

    def _on_frame(self, frame: VideoFrame, video: av.video.stream.VideoStream) -> None:
        self._on_access_unit(to_packet(frame, video), self.clock())

    def _publish_stats(self, demux: PsDemuxer, receiver: MediaReceiver) -> None:
        s, r = demux.stats, receiver.stats
        self.demux_stats = {"frames": s.frames, "dropped_frames": s.dropped_frames, "psms": s.psms,
                            "psm_changes": s.psm_changes, "resync_bytes": s.resync_bytes,
                            "codec_detected": s.codec_detected, "dropped_audio": s.dropped_audio + self.audio_dropped}
        self.receiver_stats = {"packets": r.packets, "lost": r.lost, "late": r.late, "ssrc": r.ssrc,
                               "ssrc_mismatches": r.ssrc_mismatches, "framing": r.framing,
                               "transport": receiver.transport, "port": receiver.port}


def gb_session_factory(link: GbLink, device_of: Callable[[Camera], str | None]) -> Callable[..., CameraSession | None]:
    """For the supervisor: a ``GbMediaSession`` for a GB/T 28181 channel camera, else None."""

    def make(camera: Camera, stream: StreamName, segmenter: Segmenter, index: SegmentIndex, **kw: Any
             ) -> CameraSession | None:
        device = device_of(camera)
        if device is None:
            return None
        return GbMediaSession(camera, stream, segmenter, index, link=link, device_id=device, **kw)

    return make


def media_link(settings: Any, server: Any) -> GbLink:
    """The one ``GbLink`` of a process's GB/T 28181 server (``ingest.gb28181.service.GbServer``):
    live sessions, backfill and device playback share its port pool and SSRC sequence."""
    link = getattr(server, "media_link", None)
    if isinstance(link, GbLink):
        return link
    from ingest.gb28181.doctor import media_address

    link = GbLink(loop=server.loop, endpoint=server.service.endpoint, devices=server.service, our_id=settings.gb_id,
                  domain=settings.gb_domain, media_host=media_address(settings),
                  ports=PortPool(*settings.gb_rtp_port_range), bind_host=settings.gb_sip_bind.rpartition(":")[0],
                  default_transport=settings.gb_media_transport)
    server.media_link = link
    return link
