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
from typing import Callable

import av
import numpy as np

from ingest.media.jpeg import picture
from ingest.media.packet_worker import PacketWorker, StreamDecoder
from storage.index.media import MediaIndex, Picture

log = logging.getLogger(__name__)

THUMBNAIL_QUALITY = 60


class SnapshotStore:
    """The latest picture of every camera stream this process sees (memory only)."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], Picture] = {}
        self._lock = threading.Lock()

    def put(self, snap: Picture) -> None:
        with self._lock:
            self._latest[(snap.camera_id, snap.stream)] = snap

    def latest(self, camera_id: str) -> Picture | None:
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
        self.snapshots = 0
        self.thumbnails = 0
        self.decoder = StreamDecoder(f"camera {camera_id}/{stream} snapshots", keyframes_only=True)
        self._last_bucket: int | None = None
        self.tap = PacketWorker(f"snap-{camera_id}-{stream}", self._handle, clock=clock, maxsize=8)

    def close(self) -> None:
        self.tap.close()

    @property
    def unreadable(self) -> int:
        """Keyframes the decoder refused."""
        return self.decoder.unreadable

    def _handle(self, packet: av.Packet, arrival_us: int) -> None:
        if not packet.is_keyframe:
            return  # the decoder would skip it anyway; don't even hand it over
        for frame in self.decoder.decode(packet):
            self._picture(frame.to_ndarray(format="bgr24"), arrival_us)

    def _picture(self, image: np.ndarray, t_us: int) -> None:
        self.store.put(picture(image, self.camera_id, self.stream, t_us))
        self.snapshots += 1
        bucket = t_us // self.thumbnail_interval_us
        if self.media is not None and bucket != self._last_bucket:
            self._last_bucket = bucket
            thumb = picture(image, self.camera_id, self.stream, t_us, quality=THUMBNAIL_QUALITY,
                            width=self.thumbnail_width)
            try:
                self.media.add_thumbnail(thumb)
                self.thumbnails += 1
            except Exception:  # noqa: BLE001 - the index being down must not stop snapshots
                log.exception("camera %s: could not store a thumbnail", self.camera_id)
