"""The live hub: one per camera stream, between the ``CameraSession`` and every live viewer.

The session thread hands each whole video access unit to ``LiveHub.tap`` (installed in
``session.taps``). The tap never blocks: it turns the ``av.Packet`` into an ``AccessUnit``
(Annex-B split, parameter sets put in front of every keyframe, pts on one continuous 90 kHz
timeline) and posts it to the viewers' event loop with ``call_soon_threadsafe``. There an
``AccessUnitFanout`` keeps the current GOP (a new viewer starts at the last keyframe at once)
and gives every viewer a bounded queue (a slow viewer skips to the next keyframe; it never
blocks the camera or the others).

A hub outlives the sessions that feed it: when the camera reconnects, or the supervisor
restarts an edited camera, the new session is attached to the same hub, so viewers stay
subscribed and simply get picture again. New codec parameters are announced to the
``on_params`` callbacks (on the event loop) and the pts timeline carries on without a jump
back, so WebRTC and fMP4 consumers need no reset.

``LiveHubs`` is the set of hubs of one process; the app binds it to its event loop with
``bind_loop`` at start-up. Until then the hubs drop what they are given: nobody watches.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable


from ingest.live.fanout import MAX_GOP_CACHE, AccessUnitFanout, AccessUnitSubscription
from ingest.access_unit import AccessUnit
from storage.mp4.nal import (HEVC_PARAMETER_SETS, NAL_PPS, NAL_SPS, nal_type, parameter_set_nals,
                             parameter_sets_from_extradata, split_annexb)

if TYPE_CHECKING:
    import av  # annotations only: the native path hands access units, PyAV is never loaded for it
    from ingest.recording.session import CameraSession

log = logging.getLogger(__name__)

TIME_BASE_90K = Fraction(1, 90000)
# A pts step past this (either way) is a new timeline (a reconnect, a camera reboot): rebase.
MAX_PTS_STEP_90K = 5 * 90000
# A hub that has had no access unit for this long is not live (the camera is down).
ONLINE_WINDOW_S = 5.0
_CODECS = {"h264": "h264", "hevc": "h265", "h265": "h265"}


@dataclass(frozen=True)
class StreamParams:
    """What a viewer must know to decode a hub's stream; ``generation`` counts changes."""

    codec: str  # "h264" or "h265"
    width: int
    height: int
    parameter_sets: tuple[bytes, ...]  # H.264: (SPS, PPS); H.265: (VPS, SPS, PPS); no start codes
    fps: float | None
    generation: int

    @property
    def sps(self) -> bytes | None:
        sets = self.parameter_sets
        if self.codec == "h264":
            return sets[0] if len(sets) >= 2 else None
        return sets[1] if len(sets) >= 3 else None

    @property
    def pps(self) -> bytes | None:
        return self.parameter_sets[-1] if self.parameter_sets else None


def _is_param(codec: str, nal: bytes) -> bool:
    return nal_type(nal) in (NAL_SPS, NAL_PPS) if codec == "h264" else (nal[0] >> 1) & 0x3F in HEVC_PARAMETER_SETS


def annexb(au: AccessUnit) -> bytes:
    """An access unit as one Annex-B buffer (4-byte start codes), as decoders and aiortc take it."""
    return b"".join(b"\x00\x00\x00\x01" + n for n in au.nals)


class LiveHub:
    """Fans one camera stream out to live viewers; implements ``streams.rtsp.server.AccessUnitSource``."""

    def __init__(self, camera_id: str, stream: str, hubs: LiveHubs) -> None:
        self.camera_id = camera_id
        self.stream = stream
        self._hubs = hubs
        self.fanout: AccessUnitFanout[AccessUnit] = AccessUnitFanout()
        self.session: CameraSession | None = None
        self.params: StreamParams | None = None
        # Called on the event loop with the new StreamParams whenever they change.
        self.on_params: list[Callable[[StreamParams], None]] = []
        self.last_au_monotonic: float | None = None
        self.access_units = 0
        self.viewers = 0
        # The stream it serves has B-frames (pictures out of presentation order): browsers'
        # WebRTC decoders cannot take it (RTP has no decode times). Per source (connection).
        self.b_frames = False
        self._last_tap_pts: int | None = None
        # Session-thread state: the stream being read and the pts rebasing.
        self._source_stream: object | None = None
        self._offset_90k = 0
        self._last_in: int | None = None
        self._last_out: int | None = None
        self._frame_90k = 3600
        # Session-thread GOP cache while nobody watches: (packet, wallclock) as they came.
        self._idle_gop: list[tuple[av.Packet | AccessUnit, float]] = []
        self._watched = False  # converting and posting every frame (someone subscribed)
        self._lock = threading.Lock()

    # -- the session side (session thread) ---------------------------------------------

    def attach(self, session: CameraSession) -> None:
        """Feed this hub from ``session`` (call before ``session.start()``)."""
        self.session = session
        au_taps = getattr(session, "au_taps", None)
        if au_taps is not None:
            au_taps.append(self.tap_access_unit)  # the native puller: access units, no av.Packet
        else:
            session.taps.append(self.tap)

    def tap_access_unit(self, au: AccessUnit, source: Any) -> None:
        """A native session's tap: the same as ``tap`` for an access unit of ``source``
        (a ``NativeVideoInput``: codec, size and parameter sets of the connection)."""
        if source is not self._source_stream:
            self._source_stream = source
            self.b_frames = False
            self._last_tap_pts = None
            previous = self.params
            generation = previous.generation + 1 if previous is not None else 1
            self._set_params(StreamParams(source.codec, source.width, source.height, tuple(source.parameter_sets),
                                          previous.fps if previous is not None else None, generation))
        self._note_order(au.pts_90k, au.decode_90k)
        self.last_au_monotonic = time.monotonic()
        self.access_units += 1
        with self._lock:
            if not self._watched:
                if au.keyframe:
                    self._idle_gop = [(au, time.time())]
                elif self._idle_gop and len(self._idle_gop) < MAX_GOP_CACHE:
                    self._idle_gop.append((au, time.time()))
                return
            if not self.fanout.subscriber_count:
                self._watched = False
                self._idle_gop = [(au, time.time())] if au.keyframe else []
                self._hubs.post(self.fanout.clear_cache)
                return
            self._hubs.post(self.fanout.publish, self._to_au(au, time.time()))

    def tap(self, packet: av.Packet) -> None:
        """A ``CameraSession`` tap: converts and posts one access unit; never blocks.

        With nobody watching, the current GOP is only kept as it came (no conversion, no
        wake-up of the event loop per frame: most cameras are not watched most of the
        time); the first viewer gets it at once, converted, then the live frames."""
        stream = packet.stream
        if stream is None or stream.type != "video" or packet.pts is None:
            return  # audio is not served live yet
        if stream is not self._source_stream:
            self._new_source(stream)
        if self.params is None:
            return
        self._note_order(packet.pts, packet.pts if packet.dts is None else packet.dts)
        self.last_au_monotonic = time.monotonic()
        self.access_units += 1
        with self._lock:
            if not self._watched:
                if packet.is_keyframe:
                    self._idle_gop = [(packet, time.time())]
                elif self._idle_gop and len(self._idle_gop) < MAX_GOP_CACHE:
                    self._idle_gop.append((packet, time.time()))
                return
            if not self.fanout.subscriber_count:
                # The last viewer left: stop converting; the fan-out's GOP goes stale.
                self._watched = False
                self._idle_gop = [(packet, time.time())] if packet.is_keyframe else []
                self._hubs.post(self.fanout.clear_cache)
                return
            self._hubs.post(self.fanout.publish, self._to_au(packet, time.time()))

    def _note_order(self, pts: int, dts: int) -> None:
        """B-frames show as a pts below the previous one, or at once as a decode time below
        the pts (the keyframe of a stream whose SPS announces reordering)."""
        if not self.b_frames and ((self._last_tap_pts is not None and pts < self._last_tap_pts) or dts < pts):
            self.b_frames = True
            log.info("live hub %s/%s: the stream has B-frames; WebRTC viewers need its live-h264 profile",
                     self.camera_id, self.stream)
        self._last_tap_pts = pts

    def _to_au(self, packet: av.Packet | AccessUnit, wallclock: float) -> AccessUnit:
        """One packet (or a native access unit) as a viewer's access unit: 90 kHz pts on one
        continuous timeline, parameter sets in front of keyframes. Called with ``_lock`` held."""
        params = self.params
        assert params is not None
        if isinstance(packet, AccessUnit):
            return self._place(packet.pts_90k, packet.decode_90k, packet.nals, packet.keyframe, wallclock)
        pts = int(packet.pts * packet.time_base / TIME_BASE_90K) if packet.time_base else packet.pts
        dts = pts
        if packet.dts is not None:
            dts = int(packet.dts * packet.time_base / TIME_BASE_90K) if packet.time_base else packet.dts
        return self._place(pts, min(dts, pts), tuple(split_annexb(bytes(packet))), bool(packet.is_keyframe), wallclock)

    def _place(self, pts: int, dts: int, nals: tuple[bytes, ...], keyframe: bool, wallclock: float) -> AccessUnit:
        params = self.params
        assert params is not None
        # Continuity is judged on decode time: a B-frame's pts steps back in a continuous stream.
        out = dts + self._offset_90k
        if self._last_out is not None and not (0 < out - self._last_out <= MAX_PTS_STEP_90K):
            # A new timeline: continue one frame after the last access unit served.
            self._offset_90k = self._last_out + self._frame_90k - dts
            out = dts + self._offset_90k
        self._last_out = out
        if keyframe:
            inband = tuple(n for n in nals if _is_param(params.codec, n))
            if inband and parameter_set_nals(params.codec, list(inband)) not in ((), params.parameter_sets):
                self._set_params(StreamParams(params.codec, params.width, params.height,
                                              parameter_set_nals(params.codec, list(inband)), params.fps, params.generation + 1))
                params = self.params
                assert params is not None
            if not inband:
                # Every keyframe must decode on its own: WebRTC and fMP4 viewers join there.
                nals = params.parameter_sets + nals
        return AccessUnit(nals, pts + self._offset_90k, keyframe, wallclock=wallclock,
                          dts_90k=out if dts != pts else None)

    def _new_source(self, stream: av.video.stream.VideoStream) -> None:
        self._source_stream = stream
        self.b_frames = False
        self._last_tap_pts = None
        ctx = stream.codec_context
        # canonical_name: an encoder's stream (libx264, from a transcode profile) is "h264".
        name = ctx.codec.canonical_name if ctx.codec is not None else ctx.name
        codec = _CODECS.get(name, name)
        rate = stream.guessed_rate or stream.average_rate
        fps = float(rate) if rate else None
        if fps:
            self._frame_90k = max(1, round(90000 / fps))
        sets = parameter_sets_from_extradata(codec, ctx.extradata)
        previous = self.params
        generation = previous.generation + 1 if previous is not None else 1
        self._set_params(StreamParams(codec, ctx.width, ctx.height, sets, fps, generation))

    def _set_params(self, params: StreamParams) -> None:
        self.params = params
        self._hubs.post(self._announce, params)

    def _announce(self, params: StreamParams) -> None:
        for callback in list(self.on_params):
            try:
                callback(params)
            except Exception:  # noqa: BLE001 - one consumer must not break the others
                log.exception("live hub %s/%s: a parameter listener failed", self.camera_id, self.stream)

    # -- the viewer side (event loop) ---------------------------------------------------

    @property
    def codec(self) -> str:
        return self.params.codec if self.params is not None else "h264"

    def parameter_sets(self) -> tuple[bytes, ...]:
        return self.params.parameter_sets if self.params is not None else ()

    def subscribe(self, max_queue: int | None = None) -> AccessUnitSubscription[AccessUnit]:
        """Access units from the last keyframe on (the cached GOP first). Close it when done.
        On the viewers' event loop."""
        with self._lock:
            if not self._watched:
                # The first viewer: convert the GOP kept while nobody watched, here and now,
                # so this viewer starts at once; the session thread converts from here on.
                self.fanout.clear_cache()
                for packet, wallclock in self._idle_gop:
                    self.fanout.publish(self._to_au(packet, wallclock))
                self._idle_gop = []
                self._watched = True
            return self.fanout.subscribe(max_queue)

    @property
    def viewer_count(self) -> int:
        """Live viewers (WebRTC and MSE) watching now; the routes count them in and out.

        Not the fan-out's subscriber count: MSE viewers share one subscription (one muxer)."""
        return self.viewers

    @property
    def has_gop(self) -> bool:
        """A keyframe is cached: a new viewer starts at once."""
        return bool(self._idle_gop) or self.fanout.has_gop

    @property
    def online(self) -> bool:
        """True when an access unit came in the last few seconds."""
        last = self.last_au_monotonic
        return last is not None and time.monotonic() - last < ONLINE_WINDOW_S

    def close(self) -> None:
        self.fanout.close()


class LiveHubs:
    """The hubs of one process, keyed by (camera id, stream). Thread-safe."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._hubs: dict[tuple[str, str], LiveHub] = {}
        self._lock = threading.Lock()
        # Called (on the supervisor's thread) with each new hub, e.g. to serve it over RTSP.
        self.on_new_hub: list[Callable[[LiveHub], None]] = []
        # Called with each hub that ``remove`` ends.
        self.on_removed_hub: list[Callable[[LiveHub], None]] = []

    def bind_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The event loop viewers run on; hubs publish there from now on (None: nowhere)."""
        self.loop = loop

    def post(self, callback: Callable[..., object], *args: object) -> None:
        """Run ``callback(*args)`` on the viewers' loop, from any thread; dropped when there is
        no loop (nobody can watch), e.g. while the process stops and sessions still run."""
        loop = self.loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed under us
            self.loop = None

    def attach(self, session: CameraSession) -> LiveHub:
        """The hub for ``session``'s camera stream (made on first use), now fed by ``session``."""
        key = (session.camera.id, session.stream)
        with self._lock:
            hub = self._hubs.get(key)
            new = hub is None
            if hub is None:
                hub = self._hubs[key] = LiveHub(key[0], key[1], self)
        hub.attach(session)
        if new:
            for callback in self.on_new_hub:
                callback(hub)
        return hub

    def get(self, camera_id: str, stream: str) -> LiveHub | None:
        return self._hubs.get((camera_id, stream))

    def remove(self, camera_id: str, stream: str) -> None:
        """The camera stream is gone: end its viewers."""
        with self._lock:
            hub = self._hubs.pop((camera_id, stream), None)
        if hub is not None:
            for callback in self.on_removed_hub:
                callback(hub)
            if self.loop is not None:
                self.post(hub.close)
            else:
                hub.close()

    def all(self) -> list[LiveHub]:
        with self._lock:
            return list(self._hubs.values())
