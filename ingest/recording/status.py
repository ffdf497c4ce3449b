"""``CameraStatus``: what ops staff see about one camera stream, with no secrets in it."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Literal

State = Literal["connecting", "recording", "offline", "unauthorized", "unsupported", "disabled", "stopped"]


@dataclass
class CameraStatus:
    camera_id: str
    stream: str
    state: State = "connecting"
    since_us: int = 0
    codec: str = ""
    width: int = 0
    height: int = 0
    audio_codec: str | None = None
    fps: float = 0.0
    bitrate_bps: float = 0.0
    keyframe_interval_s: float = 0.0
    reconnects: int = 0
    errors: int = 0
    last_error: str = ""  # always redacted
    last_packet_us: int = 0
    segments: int = 0
    transcode: str = ""  # the profile running on this stream ("" none), or "<profile>: failed"
    encoder: str = ""  # the H.264 encoder it uses (libx264, h264_nvenc, ...)
    puller: str = "ffmpeg"  # "native" (our RTSP client) or "ffmpeg" (PyAV's demuxer)
    lost_packets: int = 0  # RTP packets that never came (native puller)
    dropped_frames: int = 0  # pictures dropped for loss, until the next keyframe (native puller)
    clock_offset_ms: float | None = None  # camera clock (RTCP SR) minus ours; recorded, never applied
    # The camera sends B-frames (pictures out of presentation order): browsers' WebRTC
    # cannot play it as it is, only through its live-h264 profile (docs/live.md).
    b_frames: bool = False
    reorder_depth: int = 0  # pictures a decoder holds before output (SPS, or as observed)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class RateMeter:
    """Frames and bytes over a sliding window of wall time, for fps and bitrate."""

    window_us: int = 5_000_000
    _frames: deque = field(default_factory=deque)  # (t_us, bytes)
    _bytes: int = 0
    _last_key_us: int = 0
    keyframe_interval_s: float = 0.0

    def add(self, t_us: int, size: int, keyframe: bool) -> None:
        self._frames.append((t_us, size))
        self._bytes += size
        while self._frames and self._frames[0][0] < t_us - self.window_us:
            self._bytes -= self._frames.popleft()[1]
        if keyframe:
            if self._last_key_us:
                self.keyframe_interval_s = (t_us - self._last_key_us) / 1e6
            self._last_key_us = t_us

    def rates(self) -> tuple[float, float]:
        """(frames per second, bits per second) over the window."""
        if len(self._frames) < 2:
            return 0.0, 0.0
        span = (self._frames[-1][0] - self._frames[0][0]) / 1e6
        if span <= 0:
            return 0.0, 0.0
        return (len(self._frames) - 1) / span, self._bytes * 8 / span

    def reset(self) -> None:
        self._frames.clear()
        self._bytes = 0
        self._last_key_us = 0
