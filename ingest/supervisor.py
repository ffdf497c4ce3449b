"""``Supervisor``: keeps one ``CameraSession`` per enabled camera stream, following the registry.

It polls the registry's version (cheap) every ``registry_poll_seconds`` and
reconciles: new or re-enabled cameras start, removed or disabled ones stop,
edited ones restart. So a registry change reaches a running process in
seconds, without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from config.cameras import STREAMS, Camera, StreamName
from config.settings import Settings
from ingest.live.hub import LiveHubs
from ingest.recording.segmenter import Clock, Segmenter
from ingest.media.pipelines import motion_stream
from ingest.recording.loops import IngestLoops
from ingest.recording.native_session import NativeCameraSession
from ingest.recording.session import CameraSession
from ingest.recording.spool import Spool, SpoolEntry
from ingest.recording.status import CameraStatus
from ingest.recording.uploader import Uploader
from storage.index.segments import Fence, SegmentIndex
from config.times import now_us
from storage.objects.store import ObjectStore
from storage.index.registry import Registry

log = logging.getLogger(__name__)

SessionKey = tuple[str, StreamName]
# (camera, stream, segmenter, index, **CameraSession options) -> a session, or None for RTSP.
SessionFactory = Callable[..., CameraSession | None]


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        index: SegmentIndex,
        store: ObjectStore,
        *,
        clock: Clock = now_us,
        owns: Callable[[Camera], bool] = lambda camera: True,
        attach: Callable[["Supervisor", CameraSession], Callable[[], None]] | None = None,
        fence: Callable[[SpoolEntry], Fence | None] | None = None,
        session_factory: SessionFactory | None = None,
    ):
        self.settings = settings
        self.registry = registry
        self.index = index
        self.clock = clock
        # Which cameras this worker records (all, unless leases say otherwise).
        self.owns = owns
        # Adds taps to each new session (snapshots, motion, transcode: ingest.media.pipelines);
        # returns what to call when the session stops.
        self.attach = attach
        # Makes the session of a camera that is not pulled over RTSP (a GB/T 28181 channel:
        # ingest.gb28181.media.session.gb_session_factory); None from it means RTSP.
        self.session_factory = session_factory
        self._detach: dict[SessionKey, Callable[[], None]] = {}
        assert settings.spool_dir is not None
        # On a shared spool volume each worker has its own directory; a taker adopts
        # a dead worker's files from its neighbour directories (``adopt``).
        self.shared_spool = settings.spool_shared_dir
        root = settings.spool_shared_dir / settings.worker_id if settings.spool_shared_dir else settings.spool_dir
        self.spool = Spool(root, settings.spool_quota_bytes)
        self.uploader = Uploader(
            self.spool, store, index, on_dropped=self._record_dropped, quota_policy=settings.spool_policy,
            fence=fence,
        )
        self.sessions: dict[SessionKey, CameraSession] = {}
        # One live hub per camera stream; it outlives restarts of the session that feeds it.
        self.live = LiveHubs()
        self.loops = IngestLoops(settings.ingest_loops, settings.ingest_read_batch_ms / 1000,
                                 settings.ingest_cameras_per_loop)
        self._cameras: dict[str, Camera] = {}
        self._version: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._past_refusals = 0  # quota refusals of sessions since stopped, so the counter never goes down

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        recovered = self.spool.recover()
        if recovered:
            log.info("recovered %d segment(s) from the spool", len(recovered))
        self.uploader.start()
        self.reconcile()
        self._thread = threading.Thread(target=self._poll, name="supervisor", daemon=True)
        self._thread.start()

    def close(self) -> int:
        """Stop every session (closing open segments), then upload for up to the
        shutdown timeout. Returns the number of segments left in the spool."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            sessions = list(self.sessions.values())
            self.sessions.clear()
        for s in sessions:
            s.request_stop()  # all at once, so they wind down in parallel
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds / 2
        for s in sessions:
            s.stop(gap_reason="worker_restart", timeout=max(0.1, deadline - time.monotonic()))
            self._detach_session((s.camera.id, s.stream))
        left = self.uploader.close(max(1.0, self.settings.shutdown_timeout_seconds / 2))
        self.loops.close()
        return left

    # -- reconciling with the registry ------------------------------------------------

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.registry_poll_seconds):
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 - a database blip must not stop recording
                log.exception("registry poll failed; keeping the current sessions")

    def reconcile(self, force: bool = False) -> None:
        """Start and stop sessions to match the registry and ``owns``. ``force``: even
        if the registry did not change (the lease keeper calls it when ownership did)."""
        if self._stop.is_set():
            return  # closing: no session may start behind close()'s back
        version = self.registry.version()
        if version == self._version and not force:
            return
        cameras = {c.id: c for c in self.registry.cameras()}
        with self._lock:
            if self._stop.is_set():
                return
            self._version = version
            wanted: dict[SessionKey, Camera] = {}
            for cam in cameras.values():
                if not cam.enabled or not self.owns(cam):
                    continue
                for stream in STREAMS:
                    # A GB/T 28181 channel has no URL: it is recorded only where a session
                    # factory can INVITE its device (a process with GB_SIP_BIND set).
                    if cam.stream_url(stream) or (cam.has_stream(stream) and cam.source == "gb28181"
                                                  and self.session_factory is not None):
                        wanted[(cam.id, stream)] = cam
            for key, session in list(self.sessions.items()):
                wanted_cam = wanted.get(key)
                if wanted_cam is None or wanted_cam != session.camera:
                    del self.sessions[key]
                    old = cameras.get(key[0])
                    reason = "disabled" if old is not None and not old.enabled else None
                    if wanted_cam is not None:
                        reason = None  # edited: the restart gap is closed by the new session at once
                    log.info("camera %s/%s: %s", key[0], key[1],
                             "disabled" if reason else ("changed, restarting" if wanted_cam else "removed"))
                    session.stop(gap_reason=reason)
                    self._detach_session(key)
                    self._past_refusals += session.segmenter.refusals
                    if wanted_cam is None:
                        self.live.remove(*key)
            for key, cam in wanted.items():
                if key not in self.sessions:
                    self.sessions[key] = self._new_session(cam, key[1])
                    self.live.attach(self.sessions[key])
                    if self.attach is not None:
                        try:
                            self._detach[key] = self.attach(self, self.sessions[key])
                        except Exception:  # noqa: BLE001 - media must never stop recording
                            log.exception("camera %s/%s: could not attach media taps", *key)
                    self.sessions[key].start()
            self._cameras = cameras

    def _new_session(self, camera: Camera, stream: StreamName) -> CameraSession:
        last_end = self.recorded_until(camera.id, stream)
        initial_gap, adopt_gap = None, None
        stale = sorted(self.index.open_gaps(camera.id, stream), key=lambda g: g.start_us)
        if stale:
            # Left open by a process that is gone. The newest one continues (it is why
            # there is no recording now); any older ones end where the next began.
            for older, newer in zip(stale, stale[1:]):
                self.index.close_gap(older.ref, newer.start_us)
            adopt_gap = (stale[-1].ref, stale[-1].reason)
        elif last_end is not None:
            initial_gap = (last_end, "worker_restart")
        segmenter = self.new_segmenter(camera, stream, last_end)
        options = dict(clock=self.clock, connect_timeout=self.settings.connect_timeout_seconds,
                       stall_timeout=self.settings.stall_timeout_seconds, initial_gap=initial_gap,
                       adopt_gap=adopt_gap)
        if self.session_factory is not None:
            session = self.session_factory(camera, stream, segmenter, self.index, **options)
            if session is not None:
                return session
        puller, why = self.puller(camera, stream)
        if puller == "native":
            loop = self.loops.assign()
            return NativeCameraSession(camera, stream, segmenter, self.index, loop=loop,
                                       on_stopped=lambda: self.loops.release(loop),
                                       **options)  # type: ignore[arg-type]
        if why:
            log.info("camera %s/%s: ffmpeg puller (%s)", camera.id, stream, why)
        return CameraSession(camera, stream, segmenter, self.index, **options)  # type: ignore[arg-type]

    def puller(self, camera: Camera, stream: StreamName) -> tuple[str, str]:
        """Which puller records ``camera``'s ``stream``, and why when it is not the one asked for.

        The native puller hands out access units, not ``av.Packet``s: a stream that motion
        analysis or a transcode profile decodes from packets is pulled by ffmpeg (PyAV)."""
        wanted = camera.puller or self.settings.ingest_puller
        if wanted != "native":
            return "ffmpeg", ""
        if stream == "main" and camera.transcode != "none":
            return "ffmpeg", f"transcode profile {camera.transcode} decodes PyAV packets"
        if stream == motion_stream(camera, self.settings):
            return "ffmpeg", "motion analysis decodes PyAV packets"
        return "native", ""

    def recorded_until(self, camera_id: str, stream: StreamName) -> int | None:
        """End of what is recorded for the stream, in the spool or the index.

        The spool is read first: a segment the uploader moves to the index meanwhile is
        then seen in one or the other, never missed by both."""
        spooled = self.spool.last_end_us(camera_id, stream)
        last = self.index.last_segment(camera_id, stream)
        return max((t for t in (spooled, last.end_us if last else None) if t is not None), default=None)

    def new_segmenter(self, camera: Camera, stream: StreamName, last_end_us: int | None = None) -> Segmenter:
        """A segmenter that spools and uploads ``camera``'s ``stream`` (also used for
        streams a transcoder makes, e.g. the ``sub`` profile)."""
        if last_end_us is None:
            last_end_us = self.recorded_until(camera.id, stream)
        return Segmenter(
            camera.id,
            stream,
            self.spool,
            target_us=int(self.settings.segment_target_seconds * 1_000_000),
            clock=self.clock,
            on_closed=self.uploader.notify,
            worker_id=self.settings.worker_id,
            max_drift_us=int(self.settings.max_clock_drift_seconds * 1_000_000),
            last_end_us=last_end_us,
            admit=self._admit,
            on_open=self._stamp_lease_epoch,
        )

    def adopt(self, camera_ids: list[str]) -> int:
        """Adopt what other workers left in the shared spool for ``camera_ids`` (just
        taken over), before their sessions start here. Returns segments adopted."""
        if self.shared_spool is None:
            return 0
        n = 0
        for other in sorted(p for p in self.shared_spool.iterdir() if p.is_dir() and p != self.spool.root):
            for cam in camera_ids:
                try:
                    got = self.spool.adopt(other, cam)
                except OSError:
                    log.exception("camera %s: could not adopt spooled segments from %s", cam, other)
                    continue
                if got:
                    log.warning("camera %s: adopted %d spooled segment(s) [%d, %d) from worker %s", cam, len(got),
                                got[0].start_us, max(e.end_us or 0 for e in got), other.name)
                n += len(got)
        if n:
            self.uploader.notify()
        return n

    def _stamp_lease_epoch(self, entry: SpoolEntry) -> None:
        """Record the epoch the camera is recorded under in the segment itself."""
        if self.uploader.fence is not None:
            fence = self.uploader.fence(entry)
            if fence is not None:
                entry.lease_epoch = fence[1]

    def _detach_session(self, key: SessionKey) -> None:
        detach = self._detach.pop(key, None)
        if detach is not None:
            try:
                detach()
            except Exception:  # noqa: BLE001
                log.exception("camera %s/%s: media detach failed", *key)

    # -- what others ask ---------------------------------------------------------------

    def statuses(self) -> list[CameraStatus]:
        with self._lock:
            return [s.status for s in self.sessions.values()]

    def session(self, camera_id: str, stream: StreamName = "main") -> CameraSession | None:
        return self.sessions.get((camera_id, stream))

    def _admit(self) -> bool:
        """May a segmenter open a segment? Not while the spool is over quota under ``stop-recording``."""
        return self.settings.spool_policy != "stop-recording" or not self.spool.over_quota()

    def worker_stats(self) -> dict[str, float]:
        """This worker's numbers for metrics and health, read now."""
        backlog_bytes, backlog_segments = self.spool.backlog()
        up = self.uploader
        with self._lock:
            refusals = sum(s.segmenter.refusals for s in self.sessions.values())
        return {
            "spool_backlog_bytes": backlog_bytes,
            "spool_backlog_segments": backlog_segments,
            "spool_bytes": self.spool.bytes_used(),
            "spool_quota_bytes": self.spool.quota_bytes,
            "uploads": up.uploaded,
            "uploaded_bytes": up.uploaded_bytes,
            "upload_failures": up.failures,
            "upload_latency_seconds_sum": up.latency_sum_s,
            "upload_last_latency_seconds": up.last_latency_s,
            "store_available": 1.0 if up.store_available else 0.0,
            "storage_losses": up.dropped + refusals + self._past_refusals,
            "leases": 0,  # no leases until multi-worker ownership exists
        }

    def _record_dropped(self, entry: SpoolEntry) -> None:
        try:
            self.index.add_gap(entry.camera_id, entry.stream, entry.start_us, entry.end_us or entry.start_us,
                               "storage_unavailable", "spool over quota: segment dropped before upload")
        except Exception:  # noqa: BLE001
            log.exception("could not record the dropped segment of %s as a gap", entry.camera_id)
