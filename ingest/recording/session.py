"""``CameraSession``: pulls one camera stream with PyAV and feeds the segmenter.

One thread per camera stream. It connects, demuxes, joins slices into access
units, and hands them to the segmenter (and to any live taps). On any failure
it records why, closes the open segment, keeps a gap row open with the reason,
and reconnects on the ``backoff`` schedule. A stall (no packet for
``stall_timeout``) is a failure like any other.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Callable

from config.cameras import Camera, StreamName
from config.redact import redact_text, redact_url
from ingest.recording.access_units import AccessUnitJoiner, DecodeTimestamper, frame_ticks
from ingest.recording.backoff import RECONNECT_STEPS, UNAUTHORIZED_STEPS, reconnect_delay
from ingest.recording.segmenter import SUPPORTED_VIDEO, Clock, Segmenter
from ingest.recording.status import CameraStatus, RateMeter
from storage.db.schema import GapRef
from storage.index.segments import SegmentIndex

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

# Gap causes on our side; a camera fault after one of these starts a gap of its own.
_OUR_REASONS = frozenset({"worker_restart", "disabled", "storage_unavailable"})

# A tap sees every whole video access unit and every audio packet, in order.
Tap = Callable[["av.Packet"], None]


class SessionFailure(Exception):
    """Why a connection ended: ``state`` for the status, ``reason`` for the gap row."""

    def __init__(self, state: str, reason: str, message: str):
        super().__init__(message)
        self.state = state
        self.reason = reason


def classify(exc: BaseException, camera_id: str, stall_timeout: float) -> SessionFailure:
    """Map an FFmpeg/OS error to a status, a gap reason and a message that says what to do."""
    import av  # lazily: a worker with only native cameras never loads PyAV

    text = redact_text(str(exc))
    if isinstance(exc, SessionFailure):
        return exc
    if isinstance(exc, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)):
        return SessionFailure("unauthorized", "unauthorized",
                              f"camera {camera_id}: the camera refused the credentials (RTSP 401/403); "
                              "check the user and password in the URL")
    if isinstance(exc, av.error.HTTPNotFoundError):
        return SessionFailure("offline", "offline",
                              f"camera {camera_id}: the camera has no stream at that path (RTSP 404); check the URL path")
    if isinstance(exc, av.error.ExitError):
        return SessionFailure("offline", "network",
                              f"camera {camera_id}: no data for {stall_timeout:.0f} s (stalled); reconnecting")
    if isinstance(exc, (av.error.ConnectionRefusedError, ConnectionRefusedError)):
        return SessionFailure("offline", "offline",
                              f"camera {camera_id}: connection refused; is the camera on and the port right?")
    if isinstance(exc, (TimeoutError, av.error.TimeoutError if hasattr(av.error, "TimeoutError") else TimeoutError)):
        return SessionFailure("offline", "offline", f"camera {camera_id}: timed out connecting; check the network path")
    if isinstance(exc, av.error.InvalidDataError):
        return SessionFailure("offline", "network",
                              f"camera {camera_id}: the camera's answer is not valid RTSP/media ({text})")
    if isinstance(exc, (OSError, av.error.FFmpegError)):
        return SessionFailure("offline", "offline", f"camera {camera_id}: {text}")
    return SessionFailure("offline", "network", f"camera {camera_id}: {type(exc).__name__}: {text}")


UDP_RECEIVE_BUFFER = 8 << 20


def open_options(camera: Camera, io_timeout: float) -> dict[str, str]:
    """FFmpeg options for pulling ``camera``. ``io_timeout`` is FFmpeg's own socket timeout
    (connect and every read; for UDP, the wait for packets): the stall watchdog."""
    options = {
        "rtsp_transport": camera.rtsp_transport,
        "timeout": str(int(io_timeout * 1_000_000)),
        "allowed_media_types": "video+audio",
    }
    if camera.rtsp_transport == "udp":
        # A keyframe is a burst of RTP packets; the default socket buffer loses some of it
        # on a busy host (docs/recording.md). The kernel caps it at net.core.rmem_max.
        options["buffer_size"] = str(UDP_RECEIVE_BUFFER)
    return options


class CameraSession:
    """Records one stream (main or sub) of one camera until ``stop``."""

    def __init__(
        self,
        camera: Camera,
        stream: StreamName,
        segmenter: Segmenter,
        index: SegmentIndex,
        *,
        clock: Clock,
        connect_timeout: float = 10.0,
        stall_timeout: float = 10.0,
        initial_gap: tuple[int, str] | None = None,
        adopt_gap: tuple[GapRef, str] | None = None,
    ):
        self.camera = camera
        self.stream: StreamName = stream
        url = self.source_url()
        if url is None:
            raise ValueError(f"camera {camera.id} has no {stream} stream URL")
        self.url = url
        self.segmenter = segmenter
        self.index = index
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self.status = CameraStatus(camera.id, stream, since_us=clock())
        self.taps: list[Tap] = []
        self._meter = RateMeter()
        self._stamper: DecodeTimestamper | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gap: GapRef | None = None
        self._gap_reason: str | None = None
        segmenter.on_started = self._on_recording_started
        segmenter.on_run_started = self._close_gap
        segmenter.on_refused = self._on_storage_refused
        if adopt_gap is not None:
            # A gap a previous process left open (ref, reason): this session ends it.
            self._gap, self._gap_reason = adopt_gap
        elif initial_gap is not None:
            # E.g. the span since the last recorded segment before this process started.
            self._open_gap(initial_gap[0], initial_gap[1], "")

    def source_url(self) -> str | None:
        """What this session pulls (the RTSP URL; a GB/T 28181 session names its channel)."""
        return self.camera.stream_url(self.stream)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"cam-{self.camera.id}-{self.stream}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the pull loop to end; it returns at the next packet (or read timeout)."""
        self._stop.set()

    def stop(self, gap_reason: str | None = None, timeout: float = 15.0) -> None:
        """Stop pulling and close the open segment. With ``gap_reason`` (e.g. "disabled"),
        a gap is opened from the end of the recording so the timeline says why it stops."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._finish_stop(gap_reason)

    def _finish_stop(self, gap_reason: str | None) -> None:
        """After the pull has ended (or was given up on): close the run, say why it stops."""
        if not self.alive:
            # Only once the pull is gone may this thread touch the segmenter.
            self.segmenter.end_run()
        if gap_reason is not None and self._gap is None:
            start = self.segmenter.last_end_us
            self._open_gap(start if start is not None else self.clock(), gap_reason, "")
        self._set_state("disabled" if gap_reason == "disabled" else "stopped")

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the pull loop ------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._set_state("connecting")
            started = time.monotonic()
            try:
                self._pull()
                failure = SessionFailure("offline", "network", f"camera {self.camera.id}: the stream ended; reconnecting")
            except Exception as exc:  # noqa: BLE001 - every failure is classified and retried
                failure = classify(exc, self.camera.id, self.stall_timeout)
            self.segmenter.end_run()
            if self._stop.is_set():
                break
            attempt, delay = self._after_failure(failure, started, attempt)
            self._stop.wait(delay)

    def _after_failure(self, failure: SessionFailure, started: float, attempt: int) -> tuple[int, float]:
        """Record a failed connection; return the next attempt number and the delay before it.
        (Both pullers' loops, so the gaps and the backoff read the same.)"""
        # A connection that recorded for a while earns a fresh schedule.
        if time.monotonic() - started > 60:
            attempt = 0
        try:
            self._fail(failure)
        except Exception:  # noqa: BLE001 - nothing may end the pull loop but stop()
            log.exception("camera %s: recording the failure failed; reconnecting anyway", self.camera.id)
        steps = UNAUTHORIZED_STEPS if failure.state == "unauthorized" else RECONNECT_STEPS
        delay = reconnect_delay(attempt, steps)
        self.status.reconnects += 1
        return attempt + 1, delay

    def _pull(self) -> None:
        import av  # lazily: a worker with only native cameras never loads PyAV

        # The stall watchdog is FFmpeg's socket timeout, not PyAV's read timeout: PyAV's
        # interrupt callback takes the GIL on every socket wait, which with dozens of
        # cameras in one process costs more CPU than the muxing. PyAV bounds the open only.
        container = av.open(
            self.url,
            options=open_options(self.camera, self.stall_timeout),
            timeout=(self.connect_timeout, None),
        )
        try:
            if not container.streams.video:
                raise SessionFailure("unsupported", "unsupported", f"camera {self.camera.id}: the stream has no video track")
            video = container.streams.video[0]
            codec = video.codec_context.name
            if codec not in SUPPORTED_VIDEO:
                raise SessionFailure(
                    "unsupported", "unsupported",
                    f"camera {self.camera.id}: video codec {codec} is not supported; set the camera to H.264 or H.265",
                )
            audio = container.streams.audio[0] if container.streams.audio else None
            self.status.codec = SUPPORTED_VIDEO[codec]
            self.status.width = video.codec_context.width
            self.status.height = video.codec_context.height
            self.status.audio_codec = audio.codec_context.name if audio is not None else None
            self.segmenter.start_input(video, audio)
            self._meter.reset()
            streams = [video] if audio is None else [video, audio]
            try:
                self._demux(container, streams, video, audio)
            except (av.error.TimeoutError, TimeoutError, av.error.ExitError) as exc:
                raise SessionFailure("offline", "network", f"camera {self.camera.id}: no data for "
                                     f"{self.stall_timeout:.0f} s (stalled); reconnecting") from exc
        finally:
            container.close()

    def _demux(self, container: av.container.InputContainer, streams: list, video: av.video.stream.VideoStream,
               audio: av.audio.stream.AudioStream | None) -> None:
        joiner = AccessUnitJoiner(frame_ticks(video))
        self._stamper = DecodeTimestamper(video)  # a new connection: a new decode timeline
        for packet in container.demux(streams):
            if self._stop.is_set():
                return
            if packet.stream is audio:
                if packet.size:
                    self.segmenter.push_audio(packet)
                    self._tap(packet)
                continue
            for au, arrival in joiner.push(packet, self.clock()):
                self._on_access_unit(au, arrival)
        for au, arrival in joiner.flush():
            self._on_access_unit(au, arrival)

    def _on_access_unit(self, au: av.Packet, arrival_us: int) -> None:
        import av

        # Decode time first: the segmenter, the live hub and the decoders all need it.
        stamper = self._stamper
        if stamper is None:
            stamper = self._stamper = DecodeTimestamper(au.stream)
        self.status.last_packet_us = arrival_us
        if not stamper.stamp(au):
            return  # before the first keyframe: nothing can decode it, nobody records it
        self._meter.add(arrival_us, au.size, au.is_keyframe)
        if au.is_corrupt:
            self.status.errors += 1
        try:
            self.segmenter.push_video(au, arrival_us)
        except (av.error.FFmpegError, ValueError) as exc:
            # A packet the muxer refuses must not end the session: count it and go on,
            # the next keyframe starts a clean fragment.
            self.status.errors += 1
            self.status.last_error = redact_text(f"camera {self.camera.id}: muxing failed: {exc}")
            log.warning("%s", self.status.last_error)
            self.segmenter.end_run()
        self._tap(au)
        if au.is_keyframe:
            # Once a GOP is often enough for a status, and keeps the per-frame path short.
            self.status.fps, self.status.bitrate_bps = self._meter.rates()
            self.status.keyframe_interval_s = self._meter.keyframe_interval_s
            self.status.reorder_depth = stamper.depth
            if stamper.b_frames and not self.status.b_frames:
                self.status.b_frames = True
                log.info("camera %s/%s sends B-frames (reorder depth %d): recording by decode time; "
                         "WebRTC only through the live-h264 profile", self.camera.id, self.stream, stamper.depth)
            self.status.segments = self.segmenter.segments_closed

    def _tap(self, packet: av.Packet) -> None:
        for tap in self.taps:
            try:
                tap(packet)
            except Exception:  # noqa: BLE001 - a viewer must never stop the recording
                log.exception("live tap failed for camera %s", self.camera.id)

    # -- state and gaps --------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if self.status.state != state:
            self.status.state = state  # type: ignore[assignment]
            self.status.since_us = self.clock()

    def _fail(self, failure: SessionFailure) -> None:
        self._set_state(failure.state)
        message = redact_text(str(failure))
        self.status.last_error = message
        log.warning("%s (url %s)", message, redact_url(self.url))
        start = self.segmenter.last_end_us
        now = self.clock()
        if self._gap is None:
            self._open_gap(start if start is not None else now, failure.reason, message)
        elif self._gap_reason != failure.reason:
            if self._gap_reason in _OUR_REASONS:
                # The gap so far was ours (a restart, a disable, a full spool); from now on
                # the camera is the cause: end one gap, start the next. Media time may run a
                # little ahead of the wall clock, so never end a gap before its start.
                switch = max(now, self._gap.start_us)
                try:
                    self.index.close_gap(self._gap, switch)
                except Exception:  # noqa: BLE001 - the index being down must not stop recording
                    log.exception("camera %s: could not close a gap row", self.camera.id)
                self._gap = None
                self._open_gap(switch, failure.reason, message)
            else:
                # One outage is one gap (a dropped stream, then refused reconnects): it keeps
                # the latest cause, with its message.
                try:
                    self.index.set_gap_reason(self._gap, failure.reason, message)
                    self._gap_reason = failure.reason
                except Exception:  # noqa: BLE001
                    log.exception("camera %s: could not update a gap row", self.camera.id)

    def _open_gap(self, start_us: int, reason: str, detail: str) -> None:
        try:
            self._gap = self.index.open_gap(self.camera.id, self.stream, start_us, reason, detail)
            self._gap_reason = reason
        except Exception:  # noqa: BLE001 - the index being down must not stop recording
            log.exception("camera %s: could not write a gap row", self.camera.id)

    def _on_storage_refused(self, t_us: int) -> None:
        """The spool is over quota under ``stop-recording``: the camera is up but not recorded."""
        self.status.last_error = (f"camera {self.camera.id}: spool over quota; recording stopped until uploads "
                                  "catch up (check the object store)")
        log.error("%s", self.status.last_error)
        if self._gap is None:
            start = self.segmenter.last_end_us
            self._open_gap(start if start is not None else t_us, "storage_unavailable", self.status.last_error)

    def _on_recording_started(self, start_us: int) -> None:
        self._set_state("recording")

    def _close_gap(self, start_us: int) -> None:
        """The first segment after a break is closed: the gap ends where it starts."""
        if self._gap is not None:
            try:
                self.index.close_gap(self._gap, max(start_us, self._gap.start_us))
            except Exception:  # noqa: BLE001
                log.exception("camera %s: could not close a gap row", self.camera.id)
            self._gap = None
            self._gap_reason = None
