"""``probe``: connect to a camera URL once and say what it sends, or why it can't be read."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from config.cameras import Camera, RtspTransport, validate_rtsp_url
from config.redact import redact_url
from ingest.recording.segmenter import SUPPORTED_VIDEO
from ingest.recording.session import classify, open_options


@dataclass
class ProbeResult:
    url: str  # redacted
    ok: bool
    state: str  # "ok", or the status a session would show ("offline", "unauthorized", "unsupported")
    message: str
    codec: str = ""
    width: int = 0
    height: int = 0
    fps: float = 0.0
    bitrate_kbps: float = 0.0
    keyframe_interval_s: float = 0.0
    audio_codec: str | None = None
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def probe_url(url: str, *, transport: RtspTransport = "tcp", timeout: float = 10.0,
              sample_seconds: float = 3.0, camera_id: str = "probe") -> ProbeResult:
    """Open ``url``, read for up to ``sample_seconds`` to measure fps and bitrate.

    Never takes much longer than ``timeout``: the connection and every read are
    bounded by it, and sampling stops early when the budget runs out.
    """
    started = time.monotonic()
    safe = redact_url(url)
    try:
        validate_rtsp_url(url)
    except ValueError as exc:
        return ProbeResult(safe, False, "invalid", str(exc))
    cam = Camera(id="probe", name="probe", region="probe", main_url=url, rtsp_transport=transport)
    budget = max(1.0, timeout - 0.5)
    import av  # on the first probe, not with the API (an ingest worker serves it too)

    try:
        container = av.open(url, options=open_options(cam, budget), timeout=(budget, min(budget, 5.0)))
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        f = classify(exc, camera_id, budget)
        return ProbeResult(safe, False, f.state, str(f), elapsed_s=time.monotonic() - started)
    try:
        if not container.streams.video:
            return ProbeResult(safe, False, "unsupported", f"camera {camera_id}: the stream has no video track",
                               elapsed_s=time.monotonic() - started)
        video = container.streams.video[0]
        ctx = video.codec_context
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        result = ProbeResult(safe, True, "ok", "", codec=SUPPORTED_VIDEO.get(ctx.name, ctx.name),
                             width=ctx.width, height=ctx.height, audio_codec=audio)
        if ctx.name not in SUPPORTED_VIDEO:
            result.ok, result.state = False, "unsupported"
            result.message = f"camera {camera_id}: video codec {ctx.name} is not supported; set the camera to H.264 or H.265"
        deadline = started + min(timeout - 0.3, (time.monotonic() - started) + sample_seconds)
        first = last = None
        pts_seen: set[int] = set()
        nbytes = 0
        keys: list[float] = []
        try:
            for pkt in container.demux(video):
                if pkt.pts is None or pkt.size == 0:
                    continue
                t = float(pkt.pts * video.time_base)
                first = t if first is None else first
                last = t
                nbytes += pkt.size
                pts_seen.add(pkt.pts)
                if pkt.is_keyframe and (not keys or keys[-1] != t):
                    keys.append(t)
                if time.monotonic() >= deadline:
                    break
        except Exception:  # noqa: BLE001 - what was measured so far still stands
            pass
        if first is not None and last is not None and last > first:
            span = last - first
            result.fps = round((len(pts_seen) - 1) / span, 2)
            result.bitrate_kbps = round(nbytes * 8 / span / 1000, 1)
        elif video.average_rate:
            result.fps = float(video.average_rate)
        if len(keys) >= 2:
            result.keyframe_interval_s = round((keys[-1] - keys[0]) / (len(keys) - 1), 2)
        result.elapsed_s = round(time.monotonic() - started, 2)
        return result
    finally:
        container.close()


