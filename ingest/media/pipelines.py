"""``MediaPipelines``: attaches snapshots, motion and transcode profiles to camera sessions.

The ``Supervisor`` calls ``attach(supervisor, session)`` for every session it
starts and the returned callable when it stops it. Per camera stream:

- snapshots (keyframes only) on every stream, when ``settings.snapshots``;
- motion on the sub stream where the camera has one, when ``settings.motion``; on the main
  stream of a camera without one only with ``settings.motion_on_main`` (it decodes every
  main-stream frame, which costs far more than recording it);
- on the main stream, the camera's transcode profile (see ``ingest.media.transcode``):
  ``live-h264`` output is found with ``live_transcoder(camera_id)`` (the live hub
  appends its callable to ``.outputs``); ``sub`` records through a second
  ``Segmenter`` (stream ``sub``); ``archive-h264`` records the re-encode in place
  of the native stream (audio is not kept).

A profile whose encoder fails to open here is logged, shown in the camera
status, and the camera records natively: never a crash loop.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable


from config.cameras import Camera
from config.settings import Settings
from ingest.recording.segmenter import Clock, Segmenter
from ingest.recording.session import CameraSession
from ingest.media.snapshots import Snapshotter, SnapshotStore
from storage.index.media import MediaIndex

if TYPE_CHECKING:
    import av

    from ingest.media.transcode import Transcoder
    from ingest.supervisor import Supervisor

log = logging.getLogger(__name__)

Detach = Callable[[], None]


def motion_stream(camera: Camera, settings: Settings) -> str | None:
    """Which stream of ``camera`` motion analysis decodes, if any."""
    if not settings.motion:
        return None
    if camera.sub_url:
        return "sub"
    return "main" if settings.motion_on_main else None


class _FedSegmenter:
    """Feeds transcoded packets to a ``Segmenter`` on the transcoder's thread, starting a
    new run whenever the transcoder's output stream changes (a reconnect)."""

    def __init__(self, segmenter: Segmenter, transcoder: Transcoder):
        self.segmenter = segmenter
        self.transcoder = transcoder
        self._stream: object = None

    def __call__(self, packet: av.Packet) -> None:
        if packet.stream is not self._stream:
            if self._stream is not None:
                self.segmenter.end_run()
            self._stream = packet.stream
            self.segmenter.start_input(packet.stream, None)
        self.segmenter.push_video(packet, packet.opaque if isinstance(packet.opaque, int) else None)

    def end(self) -> None:
        self.segmenter.end_run()


class _ReplacedSegmenter:
    """Stands in for a session's segmenter when ``archive-h264`` records the re-encode:
    the session's native packets are not recorded; everything else reads the real one."""

    def __init__(self, real: Segmenter):
        self._real = real

    def start_input(self, video: Any, audio: Any) -> None:
        pass

    def push_video(self, packet: av.Packet, arrival_us: int | None = None) -> None:
        pass

    def push_audio(self, packet: av.Packet) -> None:
        pass

    def end_run(self) -> None:
        pass  # the transcoder's thread ends its runs (on reconnect and on stop)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class MediaPipelines:
    def __init__(self, settings: Settings, media: MediaIndex | None, *, clock: Clock,
                 snapshots: SnapshotStore | None = None):
        self.settings = settings
        self.media = media
        self.clock = clock
        self.snapshots = snapshots if snapshots is not None else SnapshotStore()
        self._live: dict[str, Transcoder] = {}
        self._lock = threading.Lock()

    def live_transcoder(self, camera_id: str) -> Transcoder | None:
        """The running ``live-h264`` transcoder of a camera (append to its ``outputs``)."""
        with self._lock:
            return self._live.get(camera_id)

    def attach(self, supervisor: "Supervisor", session: CameraSession) -> Detach:
        cam, stream = session.camera, session.stream
        closers: list[Callable[[], None]] = []
        if self.settings.snapshots:
            snap = Snapshotter(cam.id, stream, self.snapshots, self.media, clock=self.clock,
                               thumbnail_interval_us=int(self.settings.thumbnail_interval_seconds * 1_000_000),
                               thumbnail_width=self.settings.thumbnail_width)
            au_taps = getattr(session, "au_taps", None)
            if au_taps is not None:
                au_taps.append(snap.tap_access_unit)  # native puller: lazy, decoded on request
            else:
                session.taps.append(snap.tap)
            closers.append(snap.close)
        if stream == motion_stream(cam, self.settings):
            settings = self.media.motion_settings(cam.id) if self.media is not None else None
            from config.motion import MotionSettings
            from ingest.media.motion import MotionAnalyzer  # OpenCV and NumPy only where motion runs

            analyzer = MotionAnalyzer(cam.id, stream, self.media, settings or MotionSettings(), clock=self.clock,
                                      fps=self.settings.motion_fps, width=self.settings.motion_width)
            session.taps.append(analyzer.tap)
            closers.append(analyzer.close)
        if stream == "main":
            closers.extend(self._attach_profile(supervisor, session))

        def detach() -> None:
            for close in closers:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    log.exception("camera %s/%s: media shutdown failed", cam.id, stream)
            with self._lock:
                if self._live.get(cam.id) is not None and stream == "main":
                    self._live.pop(cam.id, None)
            self.snapshots.forget(cam.id, stream)

        return detach

    def _attach_profile(self, supervisor: "Supervisor", session: CameraSession) -> list[Callable[[], None]]:
        cam = session.camera
        if cam.transcode == "none":
            return []
        from ingest.media.transcode import Transcoder, TranscodeError, choose_encoder, profile_spec  # PyAV

        try:
            spec = profile_spec(cam.transcode, self.settings)
            if spec is None:
                return []
            encoder = choose_encoder(self.settings.transcode_encoder, self.settings.transcode_threads)
        except TranscodeError as exc:
            # Registration checks this; a machine without the encoder must still record.
            message = f"camera {cam.id}: transcode profile {cam.transcode} is off: {exc}"
            log.error("%s", message)
            session.status.transcode = f"{cam.transcode}: failed"
            session.status.last_error = message
            return []
        session.status.transcode = cam.transcode
        session.status.encoder = encoder
        transcoder = Transcoder(cam.id, spec, encoder, clock=self.clock, threads=self.settings.transcode_threads)
        if spec.name == "live-h264":
            with self._lock:
                self._live[cam.id] = transcoder
            # Live viewers get the H.264, not the camera's H.265: move the hub's tap from
            # the session (native packets) to the transcoder's output.
            hub = supervisor.live.get(cam.id, "main")
            if hub is not None:
                if hub.tap in session.taps:
                    session.taps.remove(hub.tap)
                transcoder.outputs.append(hub.tap)
        elif spec.name == "sub":
            if cam.sub_url:
                log.info("camera %s has a sub-stream; the sub profile is not needed and is off", cam.id)
                transcoder.close()
                return []
            fed = _FedSegmenter(supervisor.new_segmenter(cam, "sub"), transcoder)
            transcoder.outputs.append(fed)
            transcoder._on_stop = fed.end
        elif spec.name == "archive-h264":
            real = session.segmenter
            session.segmenter = _ReplacedSegmenter(real)  # type: ignore[assignment]
            fed = _FedSegmenter(real, transcoder)
            transcoder.outputs.append(fed)
            transcoder._on_stop = fed.end
        session.taps.append(transcoder.tap)
        return [transcoder.close]
