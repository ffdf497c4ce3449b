"""Snapshots: the latest picture of each camera, and one timeline thumbnail per interval.

A ``Snapshotter`` is a session tap (through a ``PacketWorker``) with a decoder of
its own that skips every non-keyframe (``skip_frame=NONKEY``): one picture per
GOP for a small fraction of full decoding (measured in tests/bench/transcode.py).
Each decoded keyframe becomes the camera's latest JPEG (in memory, in a
``SnapshotStore``); the first one in each thumbnail interval is also stored,
downscaled, in the index (``storage.index.media``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

import av
import cv2
import numpy as np

from ingest.media.packet_worker import PacketWorker, new_decoder
from storage.index.media import MediaIndex, Thumbnail

log = logging.getLogger(__name__)

JPEG_QUALITY = 80
THUMBNAIL_QUALITY = 60


@dataclass(frozen=True)
class Snapshot:
    camera_id: str
    stream: str
    t_us: int
    width: int
    height: int
    jpeg: bytes


def scaled_size(width: int, height: int, to_width: int | None) -> tuple[int, int]:
    """(width, height) downscaled (never up) to ``to_width``, keeping the aspect."""
    if to_width is None or not 0 < to_width < width:
        return width, height
    return to_width, max(2, round(height * to_width / width))


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY, width: int | None = None) -> bytes:
    """JPEG of a BGR image, downscaled (never up) to ``width`` keeping the aspect."""
    size = scaled_size(image.shape[1], image.shape[0], width)
    if size != (image.shape[1], image.shape[0]):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV refuses only impossible images
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def resize_jpeg(jpeg: bytes, width: int) -> bytes:
    """A stored JPEG at a smaller ``width`` (for ``latest.jpg?width=``)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return encode_jpeg(image, width=width)


class SnapshotStore:
    """The latest snapshot of every camera stream this process sees (memory only)."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], Snapshot] = {}
        self._lock = threading.Lock()

    def put(self, snap: Snapshot) -> None:
        with self._lock:
            self._latest[(snap.camera_id, snap.stream)] = snap

    def latest(self, camera_id: str) -> Snapshot | None:
        """The sub-stream's picture where there is one (smaller), else the main's."""
        with self._lock:
            return self._latest.get((camera_id, "sub")) or self._latest.get((camera_id, "main"))

    def forget(self, camera_id: str, stream: str) -> None:
        with self._lock:
            self._latest.pop((camera_id, stream), None)


class Snapshotter:
    """Keyframe-only decoding of one camera stream into snapshots and thumbnails.

    Use ``snapshotter.tap`` as a session tap; ``close()`` stops its thread.
    """

    def __init__(self, camera_id: str, stream: str, store: SnapshotStore, media: MediaIndex | None, *,
                 clock: Callable[[], int], thumbnail_interval_us: int = 60_000_000, thumbnail_width: int = 160):
        self.camera_id = camera_id
        self.stream = stream
        self.store = store
        self.media = media
        self.thumbnail_interval_us = thumbnail_interval_us
        self.thumbnail_width = thumbnail_width
        self.unreadable = 0
        self.snapshots = 0
        self.thumbnails = 0
        self._decoder: av.VideoCodecContext | None = None
        self._source: object = None
        self._last_bucket: int | None = None
        self.tap = PacketWorker(f"snap-{camera_id}-{stream}", self._handle, clock=clock, maxsize=8)

    def close(self) -> None:
        self.tap.close()

    def _handle(self, packet: av.Packet, arrival_us: int) -> None:
        if not packet.is_keyframe:
            return  # the decoder would skip it anyway; don't even hand it over
        if packet.stream is not self._source:
            # A new connection: its stream may carry other parameters.
            self._source = packet.stream
            self._decoder = new_decoder(packet.stream, keyframes_only=True)
        assert self._decoder is not None
        try:
            frames = self._decoder.decode(packet)
        except av.error.FFmpegError as exc:
            self.unreadable += 1
            log.debug("camera %s/%s: unreadable keyframe skipped: %s", self.camera_id, self.stream, exc)
            return
        for frame in frames:
            self._picture(frame.to_ndarray(format="bgr24"), arrival_us)

    def _picture(self, image: np.ndarray, t_us: int) -> None:
        h, w = image.shape[:2]
        self.store.put(Snapshot(self.camera_id, self.stream, t_us, w, h, encode_jpeg(image)))
        self.snapshots += 1
        bucket = t_us // self.thumbnail_interval_us
        if self.media is not None and bucket != self._last_bucket:
            self._last_bucket = bucket
            small = encode_jpeg(image, THUMBNAIL_QUALITY, width=self.thumbnail_width)
            tw, th = scaled_size(w, h, self.thumbnail_width)
            try:
                self.media.add_thumbnail(Thumbnail(self.camera_id, self.stream, t_us, tw, th, small))
                self.thumbnails += 1
            except Exception:  # noqa: BLE001 - the index being down must not stop snapshots
                log.exception("camera %s: could not store a thumbnail", self.camera_id)
