"""Transcode profiles: H.264 made from a camera stream with PyAV, off the session thread.

Profiles (``Camera.transcode``):

- ``none``: nothing is decoded.
- ``live-h264``: H.265 cameras only: decode, scale to ``live_height`` and encode
  H.264 (``tune=zerolatency``) for the live hub. Recording stays native.
- ``sub``: for cameras without a sub-stream: a ``sub_width``x``sub_height``,
  ``sub_fps`` H.264 stream made from the main stream, recorded as ``sub`` through a
  second ``Segmenter``. Its keyframes are forced where the main stream's are, and
  its packets carry the main packets' arrival and pts, so its segments line up.
- ``archive-h264``: the main stream re-encoded to H.264 at its own size and rate,
  and that is what is recorded (for cameras whose codec players can't handle).

A ``Transcoder`` is a session tap (through a ``PacketWorker``); it hands H.264
``av.Packet`` s (Annex B, parameter sets in-band at every keyframe, keyframe
flags, pts in ``transcoder.stream.time_base``; ``packet.stream`` is
``transcoder.stream``) to each callable in ``transcoder.outputs``: the same
shape as ``CameraSession.taps``.

Encoder choice: ``choose_encoder`` tries the hardware encoders FFmpeg has that
open here (h264_nvenc, h264_qsv, h264_vaapi), else libx264, and says which in
the log and in the camera status.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Callable

from config.cameras import Camera
from config.settings import Settings
from ingest.media.packet_worker import PacketWorker, StreamDecoder

log = logging.getLogger(__name__)

HARDWARE_ENCODERS = ("h264_nvenc", "h264_qsv", "h264_vaapi")
SOFTWARE_ENCODER = "libx264"
PROFILES: tuple[str, ...] = ("none", "live-h264", "sub", "archive-h264")
OUTPUT_TIME_BASE = Fraction(1, 90000)

if TYPE_CHECKING:
    import av  # loaded by the first encoder opened: the API and a worker without profiles never need it

Output = Callable[["av.Packet"], None]

# CPU per camera, in % of one core, measured by ``tests/bench/transcode.py`` on the
# project's shared 2-core build machine (2026-11-27, libx264, 2 threads, 10 s clips,
# input demuxed from MP4): 1080p25 H.264 input (H.265 for live-h264; 360p for motion).
# ``archive-h264`` was not measured: extrapolated from live-h264 by output pixels
# (1080p / 720p = 2.25). Used by ``sharpeyes camera probe`` for an estimate.
MEASURED_CPU_PERCENT: dict[str, float] = {
    "none": 0.0,
    "snapshots": 1.3,
    "motion": 2.1,
    "live-h264": 38.8,
    "sub": 9.7,
    "archive-h264": 87.0,
}
MEASURED_AT_PIXELS = 1920 * 1080


class TranscodeError(ValueError):
    """A profile that cannot run here; raised at registration, never in a session loop."""


@dataclass(frozen=True)
class ProfileSpec:
    """What one profile makes: size (0 = the source's), frame rate (0 = the source's), tuning."""

    name: str
    width: int
    height: int
    fps: float
    zerolatency: bool
    records: bool  # its output is recorded (sub, archive) rather than only viewed
    passthrough_h264: bool = False  # H.264 input without B-frames is handed on as is (live-h264)


def profile_spec(profile: str, settings: Settings) -> ProfileSpec | None:
    """The spec of ``profile``; None for ``none``. Unknown names raise ``TranscodeError``."""
    if profile == "none":
        return None
    if profile == "live-h264":
        return ProfileSpec(profile, 0, settings.live_height, 0, True, False, passthrough_h264=True)
    if profile == "sub":
        return ProfileSpec(profile, settings.sub_width, settings.sub_height, settings.sub_fps, False, True)
    if profile == "archive-h264":
        return ProfileSpec(profile, 0, 0, 0, False, True)
    raise TranscodeError(f"unknown transcode profile {profile!r}: use one of {', '.join(PROFILES)}")


def _try_open(name: str, threads: int) -> str | None:
    """None when encoder ``name`` opens on a small picture, else why not."""
    import av

    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
        ctx.time_base = OUTPUT_TIME_BASE
        ctx.framerate = Fraction(25)
        ctx.thread_count = threads
        ctx.open()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
        return f"{type(exc).__name__}: {exc}"


_chosen: dict[tuple[str, int], str] = {}


def choose_encoder(setting: str = "auto", threads: int = 2) -> str:
    """The H.264 encoder to use: ``setting`` itself if it opens, or for ``auto`` the first
    hardware encoder that opens, else libx264. Raises ``TranscodeError`` when none opens."""
    key = (setting, threads)
    if key in _chosen:
        return _chosen[key]
    if setting != "auto":
        why = _try_open(setting, threads)
        if why is not None:
            raise TranscodeError(f"H.264 encoder {setting} does not open on this machine ({why}); "
                                 "set SHARPEYES_TRANSCODE_ENCODER=auto (or libx264)")
        _chosen[key] = setting
        return setting
    tried = []
    for name in HARDWARE_ENCODERS:
        why = _try_open(name, threads)
        if why is None:
            log.info("transcoding with hardware encoder %s", name)
            _chosen[key] = name
            return name
        tried.append(f"{name} ({why})")
    why = _try_open(SOFTWARE_ENCODER, threads)
    if why is not None:
        raise TranscodeError(f"no H.264 encoder opens: {'; '.join(tried)}; {SOFTWARE_ENCODER} ({why})")
    log.info("no hardware H.264 encoder opens here, transcoding in software with %s: %s",
             SOFTWARE_ENCODER, "; ".join(tried))
    _chosen[key] = SOFTWARE_ENCODER
    return SOFTWARE_ENCODER


def check_profile(camera: Camera, settings: Settings) -> str | None:
    """Validate ``camera``'s profile before it is registered: the encoder it needs
    must open. Returns the encoder (None for ``none``); raises ``TranscodeError``."""
    spec = profile_spec(camera.transcode, settings)
    if spec is None:
        return None
    try:
        return choose_encoder(settings.transcode_encoder, settings.transcode_threads)
    except TranscodeError as exc:
        raise TranscodeError(f"camera {camera.id}: transcode profile {camera.transcode}: {exc}") from None


def estimate_cpu_percent(profile: str, width: int, height: int, *, with_snapshots: bool = True,
                         with_motion: bool = True) -> dict[str, float]:
    """CPU (% of one core) per camera, scaled by pixels from the measured 1080p figures."""
    scale = (width * height) / MEASURED_AT_PIXELS if width and height else 1.0
    out = {profile: MEASURED_CPU_PERCENT.get(profile, 0.0) * scale}
    if with_snapshots:
        out["snapshots"] = MEASURED_CPU_PERCENT["snapshots"] * scale
    if with_motion:
        out["motion"] = MEASURED_CPU_PERCENT["motion"]
    out["total"] = sum(out.values())
    return out


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


class Transcoder:
    """Decode one camera stream and encode H.264 per ``spec``, to ``outputs``."""

    def __init__(self, camera_id: str, spec: ProfileSpec, encoder: str, *, clock: Callable[[], int],
                 threads: int = 2, outputs: list[Output] | None = None, maxsize: int = 50,
                 on_stop: Callable[[], None] | None = None):
        self.camera_id = camera_id
        self.spec = spec
        self.encoder = encoder
        self.threads = threads
        self.outputs: list[Output] = outputs if outputs is not None else []
        self.frames_in = 0
        self.frames_out = 0
        self.packets_out = 0
        self.stream: av.video.stream.VideoStream | None = None  # the output's codec parameters
        self.decoder = StreamDecoder(f"camera {camera_id} transcode {spec.name}", threads=threads,
                                     on_new_source=self._new_source)
        self._container: av.container.OutputContainer | None = None
        self._next_pts_s: float | None = None
        self._arrivals: dict[int, int] = {}
        # The input has B-frames: browsers' WebRTC cannot take them, so even H.264 is
        # re-encoded (the encoder makes none). Found at the first reordered packet.
        self.input_b_frames = False
        self._last_in_pts: int | None = None
        self._on_stop = on_stop
        self.tap = PacketWorker(f"transcode-{camera_id}-{spec.name}", self._handle, clock=clock,
                                maxsize=maxsize, on_stop=self._finish)

    def close(self) -> None:
        self.tap.close()

    # -- worker thread ---------------------------------------------------------------

    def _handle(self, packet: av.Packet, arrival_us: int) -> None:
        if packet.pts is not None and not self.input_b_frames:
            reordered = packet.dts is not None and packet.dts < packet.pts
            if reordered or (self._last_in_pts is not None and packet.pts < self._last_in_pts):
                self.input_b_frames = True
                log.info("camera %s: the input has B-frames; %s re-encodes it", self.camera_id, self.spec.name)
            self._last_in_pts = packet.pts
        if self.spec.passthrough_h264 and packet.stream.codec_context.name == "h264" and not self.input_b_frames:
            # Already what browsers take: hand it on untouched, decode nothing.
            self.packets_out += 1
            packet.opaque = arrival_us
            self._send(packet)
            return
        for frame in self.decoder.decode(packet):
            self.frames_in += 1
            self._encode(frame, arrival_us)

    @property
    def unreadable(self) -> int:
        """Packets the decoder refused."""
        return self.decoder.unreadable

    def _new_source(self) -> None:
        # A reconnect: finish the old encode; the new stream may have another size or rate.
        self._flush_encoder()
        self._next_pts_s = None
        self.input_b_frames = False
        self._last_in_pts = None

    def _size(self, frame: av.VideoFrame) -> tuple[int, int]:
        w, h = self.spec.width, self.spec.height
        if w and h:
            return w, h
        if h and h < frame.height:
            return _even(frame.width * h / frame.height), h
        return _even(frame.width), _even(frame.height)

    def _open_encoder(self, frame: av.VideoFrame) -> None:
        import av

        width, height = self._size(frame)
        fps = self.spec.fps or 25
        # The raw H.264 muxer has no global header: parameter sets stay in-band at
        # every keyframe, where the segmenter and live viewers look for them.
        self._container = av.open(io.BytesIO(), "w", format="h264")
        st = self._container.add_stream(self.encoder, rate=Fraction(fps).limit_denominator(1000))
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.time_base = OUTPUT_TIME_BASE
        st.codec_context.time_base = OUTPUT_TIME_BASE
        st.codec_context.thread_count = self.threads
        # A ceiling only: keyframes are forced where the source has them.
        st.codec_context.gop_size = int(fps * 10)
        opts = {"bf": "0"}
        if self.encoder == SOFTWARE_ENCODER:
            opts.update({"preset": "ultrafast" if self.spec.zerolatency else "veryfast", "forced-idr": "1"})
            if self.spec.zerolatency:
                opts["tune"] = "zerolatency"
        st.codec_context.options = opts
        self._container.start_encoding()
        self.stream = st

    def _encode(self, frame: av.VideoFrame, arrival_us: int) -> None:
        import av

        if frame.pts is None or frame.time_base is None:
            return
        pts_s = float(frame.pts * frame.time_base)
        keyframe = bool(frame.key_frame)
        if self.spec.fps and not keyframe:
            if self._next_pts_s is not None and pts_s < self._next_pts_s - 1e-6:
                return  # over the target rate
        if self.spec.fps:
            step = 1.0 / self.spec.fps
            self._next_pts_s = pts_s + step if self._next_pts_s is None or keyframe or pts_s - self._next_pts_s > 1 \
                else self._next_pts_s + step
        if self._container is None:
            self._open_encoder(frame)
        assert self.stream is not None
        out = frame.reformat(width=self.stream.width, height=self.stream.height, format="yuv420p")
        pts = int(round(pts_s / OUTPUT_TIME_BASE))
        out.pts, out.time_base = pts, OUTPUT_TIME_BASE
        out.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        self._arrivals[pts] = arrival_us
        self.frames_out += 1
        self._emit(self.stream.encode(out))

    def _emit(self, packets: list[av.Packet]) -> None:
        for p in packets:
            if p.pts is None:
                continue
            p.time_base = OUTPUT_TIME_BASE
            self.packets_out += 1
            arrival = self._arrivals.pop(p.pts, None)
            if len(self._arrivals) > 256:
                self._arrivals.clear()
            p.opaque = arrival  # the source packet's arrival, for segmenters downstream
            self._send(p)

    def _send(self, packet: av.Packet) -> None:
        for output in self.outputs:
            try:
                output(packet)
            except Exception:  # noqa: BLE001 - one consumer must not stop the others
                log.exception("camera %s: transcode output failed", self.camera_id)

    def _flush_encoder(self) -> None:
        import av

        if self._container is not None and self.stream is not None:
            try:
                self._emit(self.stream.encode(None))
            except av.error.FFmpegError:
                pass
            self._container = None
            self.stream = None

    def _finish(self) -> None:
        self._flush_encoder()
        if self._on_stop is not None:
            self._on_stop()
