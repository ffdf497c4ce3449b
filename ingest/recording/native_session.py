"""``NativeCameraSession``: one camera stream pulled by the native RTSP client on an ingest loop.

The same session as the PyAV ``CameraSession`` (state, gaps, backoff, status: all
inherited), with a different pull: a coroutine on a shared ``IngestLoop`` instead of a
thread, ``RtspClient`` instead of FFmpeg's demuxer, access units instead of ``av.Packet``s,
and the segmenter's native input (``storage.mp4.fragments``) instead of PyAV's muxer.

Taps: ``au_taps`` get every access unit with the stream's ``NativeVideoInput`` (the live
hub, lazy snapshots). The PyAV ``taps`` (motion, transcoding) are not fed: the supervisor
gives a camera that needs them the ``ffmpeg`` puller.

Audio: AAC frames are put on the video's 90 kHz timeline by arrival (the first audio
frame of a connection is placed at the video time of its arrival; later ones follow
their own RTP clock), since the two RTP clocks have unrelated offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Future
from dataclasses import replace
from typing import Callable

from config.cameras import Camera, StreamName
from config.redact import redact_text
from ingest.access_unit import AccessUnit
from ingest.recording.loops import IngestLoop
from ingest.recording.native_segment import AudioPacket, NativePacket, NativeVideoInput
from ingest.recording.segmenter import Clock, Segmenter
from ingest.recording.session import CameraSession, SessionFailure
from ingest.rtp.audio import AudioFrame
from ingest.rtp.rtsp_client import RtspClient, RtspError
from storage.db.schema import GapRef
from storage.index.segments import SegmentIndex
from storage.mp4.fragments import AudioTrack
from storage.mp4.decode_time import DecodeTimes, reorder_depth
from storage.mp4.sps import SequenceInfo, parse_sps

log = logging.getLogger(__name__)

AccessUnitTap = Callable[[AccessUnit, NativeVideoInput], None]

_KIND_STATE = {
    "unauthorized": ("unauthorized", "unauthorized"),
    "not_found": ("offline", "offline"),
    "refused": ("offline", "offline"),
    "stalled": ("offline", "network"),
    "closed": ("offline", "network"),
    "protocol": ("offline", "network"),
    "unsupported": ("unsupported", "unsupported"),
}


def classify_native(exc: BaseException, camera_id: str) -> SessionFailure:
    """An ``RtspError`` (or anything else) as the session's status state and gap reason."""
    if isinstance(exc, SessionFailure):
        return exc
    if isinstance(exc, RtspError):
        state, reason = _KIND_STATE.get(exc.kind, ("offline", "network"))
        return SessionFailure(state, reason, redact_text(str(exc)))
    return SessionFailure("offline", "network", f"camera {camera_id}: {type(exc).__name__}: {redact_text(str(exc))}")


class NativeCameraSession(CameraSession):
    """Records one stream of one camera with the native puller until ``stop``."""

    def __init__(self, camera: Camera, stream: StreamName, segmenter: Segmenter, index: SegmentIndex, *,
                 loop: IngestLoop, clock: Clock, connect_timeout: float = 10.0, stall_timeout: float = 10.0,
                 initial_gap: tuple[int, str] | None = None, adopt_gap: tuple[GapRef, str] | None = None,
                 on_stopped: Callable[[], None] = lambda: None) -> None:
        super().__init__(camera, stream, segmenter, index, clock=clock, connect_timeout=connect_timeout,
                         stall_timeout=stall_timeout, initial_gap=initial_gap, adopt_gap=adopt_gap)
        self.ingest_loop = loop
        self.au_taps: list[AccessUnitTap] = []
        self.status.puller = "native"
        self.client: RtspClient | None = None
        self.source: NativeVideoInput | None = None
        self._decode_times = DecodeTimes(0)
        self._last_pts: int | None = None
        self._keyed = False
        self._future: Future[None] | None = None
        self._wake: asyncio.Event | None = None
        self._on_stopped = on_stopped
        self._audio_anchor: tuple[int, int] | None = None  # (audio pts, 90 kHz video-time pts)
        self._last_video: tuple[int, float] = (0, 0.0)  # (pts, monotonic arrival)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._future = asyncio.run_coroutine_threadsafe(self._arun(), self.ingest_loop.loop)

    def request_stop(self) -> None:
        self._stop.set()
        self.ingest_loop.loop.call_soon_threadsafe(self._interrupt)

    def _interrupt(self) -> None:
        if self.client is not None:
            self.client.stop()
        if self._wake is not None:
            self._wake.set()

    def stop(self, gap_reason: str | None = None, timeout: float = 15.0) -> None:
        self.request_stop()
        if self._future is not None:
            try:
                self._future.result(timeout)
            except Exception:  # noqa: BLE001 - a failed pull has recorded its failure already
                pass
        self._finish_stop(gap_reason)

    @property
    def alive(self) -> bool:
        return self._future is not None and not self._future.done()

    # -- the pull loop (on the ingest loop) ---------------------------------------------
    async def _arun(self) -> None:
        self._wake = asyncio.Event()
        attempt = 0
        try:
            while not self._stop.is_set():
                self._set_state("connecting")
                started = time.monotonic()
                try:
                    await self._apull()
                    failure = SessionFailure("offline", "network",
                                             f"camera {self.camera.id}: the stream ended; reconnecting")
                except Exception as exc:  # noqa: BLE001 - every failure is classified and retried
                    failure = classify_native(exc, self.camera.id)
                self.segmenter.end_run()
                if self._stop.is_set():
                    break
                attempt, delay = self._after_failure(failure, started, attempt)
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass
        finally:
            self._on_stopped()

    async def _apull(self) -> None:
        client = RtspClient(self.url, on_video=self._on_access_unit_native, on_audio=self._on_audio,
                            transport=self.camera.rtsp_transport, connect_timeout=self.connect_timeout,
                            stall_timeout=self.stall_timeout, camera_id=self.camera.id)
        self.client = client
        self.source = None
        self._audio_anchor = None
        self._meter.reset()
        if self._stop.is_set():
            return
        try:
            await client.run()
        finally:
            self._update_stats()

    # -- media (on the ingest loop) -------------------------------------------------------
    def _start_input(self, au: AccessUnit) -> NativeVideoInput | None:
        client = self.client
        assert client is not None and client.video is not None
        codec = client.video.codec
        params = client.video.parameter_sets
        info: SequenceInfo | None = None
        if params:
            try:
                info = parse_sps(codec, params[-2])
            except ValueError:
                info = None
        if info is None:
            self.status.errors += 1
            self.status.last_error = (f"camera {self.camera.id}: no readable {codec} SPS in the SDP or the stream; "
                                      "waiting for the next keyframe")
            return None
        audio = None
        if client.audio is not None and client.audio_media is not None and client.audio.config:
            audio = AudioTrack(client.audio.config, client.audio.clock_rate, client.audio_media.channels)
        source = NativeVideoInput(codec, params, info.width, info.height, info, audio, self.ingest_loop.files)
        # One decode timeline per connection: the segmenter judges continuity on it.
        self._decode_times = DecodeTimes(reorder_depth(info), 3600)
        self._last_pts = None
        self._keyed = False
        self.segmenter.start_native_input(source)
        self.status.codec = codec
        self.status.width, self.status.height = info.width, info.height
        self.status.audio_codec = "aac" if audio is not None else None
        return source

    def _on_access_unit_native(self, au: AccessUnit) -> None:
        if self._stop.is_set():
            return
        now = self.clock()
        if self.source is None:
            self.source = self._start_input(au)
            if self.source is None:
                return
        self.status.last_packet_us = now
        self._last_video = (au.pts_90k, time.monotonic())
        if not self._keyed:
            if not au.keyframe:
                return  # joined mid-GOP: decode times start at the first keyframe (docs/bframes.md)
            self._keyed = True
        self._meter.add(now, sum(map(len, au.nals)), au.keyframe)
        # RTP gives the pts only: the decode time by the one rule (storage.mp4.decode_time).
        dts, pts = self._decode_times.push(au.pts_90k)
        if self._last_pts is not None and au.pts_90k < self._last_pts and not self.status.b_frames:
            self.status.b_frames = True
            log.info("camera %s/%s sends B-frames (reorder depth %d): recording by decode time; "
                     "WebRTC only through the live-h264 profile", self.camera.id, self.stream, self._decode_times.depth)
        self._last_pts = au.pts_90k
        self.status.reorder_depth = self._decode_times.depth
        packet = NativePacket(au, dts)
        packet.pts = pts
        if dts != au.pts_90k:
            au = replace(au, dts_90k=dts)  # live viewers (MSE, LL-HLS) keep the decode order too
        try:
            self.segmenter.push_video(packet, now)  # type: ignore[arg-type]
        except (ValueError, OSError) as exc:
            self.status.errors += 1
            self.status.last_error = redact_text(f"camera {self.camera.id}: writing the segment failed: {exc}")
            log.warning("%s", self.status.last_error)
            self.segmenter.end_run()
        for tap in self.au_taps:
            try:
                tap(au, self.source)
            except Exception:  # noqa: BLE001 - a viewer must never stop the recording
                log.exception("live tap failed for camera %s", self.camera.id)
        if au.keyframe:
            self.status.fps, self.status.bitrate_bps = self._meter.rates()
            self.status.keyframe_interval_s = self._meter.keyframe_interval_s
            self.status.segments = self.segmenter.segments_closed
            self._update_stats()

    def _on_audio(self, frame: AudioFrame) -> None:
        client = self.client
        if self.source is None or client is None or client.audio is None:
            return
        rate = client.audio.clock_rate or 48000
        if self._audio_anchor is None:
            vpts, arrived = self._last_video
            self._audio_anchor = (frame.pts, vpts + int((time.monotonic() - arrived) * 90000))
        apts, vpts = self._audio_anchor
        self.segmenter.push_audio(AudioPacket(frame.data, vpts + (frame.pts - apts) * 90000 // rate))  # type: ignore[arg-type]

    def _update_stats(self) -> None:
        client = self.client
        if client is None:
            return
        s = client.stats
        self.status.lost_packets = s.lost_packets
        self.status.errors = s.errors + s.bad_packets
        self.status.dropped_frames = s.dropped_frames
        self.status.clock_offset_ms = None if s.clock_offset_s is None else round(s.clock_offset_s * 1000, 1)
