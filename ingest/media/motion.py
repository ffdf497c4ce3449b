"""Motion: per-second motion levels from a background model, stored per minute.

``MotionDetector`` is the pure part: grey frames (already downscaled, ~320 px
wide) with their time go in, and a level per second (0..255) comes out. It uses
OpenCV's MOG2 background subtractor; pixels under a mask are ignored; the
foreground is cleaned with a morphological opening so sensor noise and
compression speckle do not count. The level is the share of unmasked pixels in
motion (255 = 10 % or more of the picture); below a floor set by the
sensitivity it is 0.

``MotionAnalyzer`` is the session tap: a decoder of its own (all frames, since
P-frames need their references), and only every ``1/fps`` seconds of media time
a frame is scaled to grey and handed to the detector. Levels are written to
``storage.index.media`` once a second is complete, in batches.
"""

from __future__ import annotations

import logging
from typing import Callable

import av
import cv2
import numpy as np

from config.motion import MotionSettings
from ingest.media.packet_worker import PacketWorker, StreamDecoder
from storage.index.media import MediaIndex

log = logging.getLogger(__name__)

FULL_SCALE = 0.10  # share of the picture in motion that reads as level 255


def mask_image(settings: MotionSettings, width: int, height: int) -> np.ndarray:
    """255 where motion counts, 0 under the camera's ignore masks."""
    keep = np.full((height, width), 255, np.uint8)
    for mask in settings.masks:
        pts = np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in mask.points], np.int32)
        cv2.fillPoly(keep, [pts], 0)
    return keep


class MotionDetector:
    """Frames in (grey, small), motion level per whole second out."""

    def __init__(self, settings: MotionSettings, *, warmup_frames: int = 10):
        self.settings = settings
        s = settings.sensitivity
        # Sensitivity moves both the per-pixel test and the share of the picture that counts.
        self._var_threshold = 16 + (100 - s) * 0.5
        self._floor = 0.0005 + 0.01 * (100 - s) / 100
        self._model = cv2.createBackgroundSubtractorMOG2(history=200, varThreshold=self._var_threshold,
                                                         detectShadows=False)
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._keep: np.ndarray | None = None
        self._keep_count = 1
        self._warmup = warmup_frames
        self._second: int | None = None
        self._peak = 0
        self.frames = 0

    def feed(self, t_s: float, grey: np.ndarray) -> list[tuple[int, int]]:
        """Add one frame taken at ``t_s`` (seconds); returns ``(second, level)`` for every
        second completed by it (seconds with no frames are not reported)."""
        if self._keep is None or self._keep.shape != grey.shape:
            self._keep = mask_image(self.settings, grey.shape[1], grey.shape[0])
            self._keep_count = max(1, int(np.count_nonzero(self._keep)))
        blurred = cv2.GaussianBlur(grey, (5, 5), 0)
        fg = self._model.apply(blurred)
        self.frames += 1
        level = 0
        if self.frames > self._warmup:
            fg = cv2.morphologyEx(cv2.bitwise_and(fg, self._keep), cv2.MORPH_OPEN, self._kernel)
            share = np.count_nonzero(fg) / self._keep_count
            if share >= self._floor:
                level = max(1, min(255, round(share / FULL_SCALE * 255)))
        done: list[tuple[int, int]] = []
        second = int(t_s // 1)
        if self._second is not None and second != self._second:
            done.append((self._second, self._peak))
            self._peak = 0
        self._second = second
        self._peak = max(self._peak, level)
        return done

    def flush(self) -> list[tuple[int, int]]:
        """The second in progress, as if complete."""
        if self._second is None:
            return []
        done = [(self._second, self._peak)]
        self._second, self._peak = None, 0
        return done


class MotionAnalyzer:
    """The tap: decode one camera stream, sample ``fps`` frames a second, store levels.

    Frame time is the wall clock at the first frame plus media time (pts), the
    same model as the segmenter's, so levels line up with the recording.
    """

    def __init__(self, camera_id: str, stream: str, media: MediaIndex | None, settings: MotionSettings, *,
                 clock: Callable[[], int], fps: float = 5.0, width: int = 320, batch_seconds: int = 10,
                 on_levels: Callable[[list[tuple[int, int]]], None] | None = None):
        self.camera_id = camera_id
        self.stream = stream
        self.media = media
        self.detector = MotionDetector(settings)
        self.step_s = 1.0 / fps
        self.width = width
        self.batch_seconds = batch_seconds
        self.on_levels = on_levels
        self.decoder = StreamDecoder(f"camera {camera_id}/{stream} motion", on_new_source=self._new_source)
        self._anchor: tuple[float, float] | None = None  # (pts seconds, wall seconds)
        self._next_t: float | None = None
        self._pending: list[tuple[int, int]] = []
        self.tap = PacketWorker(f"motion-{camera_id}-{stream}", self._handle, clock=clock, maxsize=64,
                                on_stop=self._finish)

    def close(self) -> None:
        self.tap.close()

    @property
    def unreadable(self) -> int:
        """Packets the decoder refused."""
        return self.decoder.unreadable

    def _new_source(self) -> None:
        self._anchor = None  # a new connection's pts start anywhere

    def _handle(self, packet: av.Packet, arrival_us: int) -> None:
        for frame in self.decoder.decode(packet):
            if frame.pts is None or frame.time_base is None:
                continue
            pts_s = float(frame.pts * frame.time_base)
            if self._anchor is None or pts_s < self._anchor[0]:
                self._anchor = (pts_s, arrival_us / 1e6)
                self._next_t = None
            t = self._anchor[1] + pts_s - self._anchor[0]
            self.analyze_frame(frame, t)

    def analyze_frame(self, frame: av.VideoFrame, t: float) -> None:
        """Hand ``frame`` (taken at wall time ``t`` seconds) to the detector if its turn has come."""
        if self._next_t is not None and t < self._next_t:
            return
        self._next_t = t + self.step_s if self._next_t is None or t - self._next_t > 1 else self._next_t + self.step_s
        height = max(2, round(frame.height * self.width / frame.width) // 2 * 2)
        grey = frame.reformat(width=self.width, height=height, format="gray").to_ndarray()
        self._store(self.detector.feed(t, grey))

    def _store(self, levels: list[tuple[int, int]], force: bool = False) -> None:
        if self.on_levels is not None and levels:
            self.on_levels(levels)
        self._pending.extend(levels)
        if self._pending and (force or self._pending[-1][0] - self._pending[0][0] >= self.batch_seconds):
            pending, self._pending = self._pending, []
            if self.media is None:
                return
            try:
                self.media.add_motion(self.camera_id, self.stream, [(t, v) for t, v in pending if v])
            except Exception:  # noqa: BLE001 - the index being down must not stop analysis
                log.exception("camera %s: could not store motion levels", self.camera_id)

    def _finish(self) -> None:
        self._store(self.detector.flush(), force=True)
