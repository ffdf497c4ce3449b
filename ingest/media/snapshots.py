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
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

from ingest.access_unit import AccessUnit
from ingest.media.jpeg import picture
from ingest.media.packet_worker import PacketWorker, StreamDecoder
from storage.index.media import MediaIndex, Picture

if TYPE_CHECKING:
    import av
    import numpy as np

log = logging.getLogger(__name__)

# Native-puller thumbnails (one keyframe a camera a minute) share one decoding thread.
_THUMBNAILS = ThreadPoolExecutor(1, thread_name_prefix="thumbnails")

THUMBNAIL_QUALITY = 60


class SnapshotStore:
    """The latest picture of every camera stream this process sees (memory only).

    A native-puller stream leaves its newest keyframe here instead of a picture
    (``put_keyframe``); ``latest`` decodes it on request, once per GOP, so a camera
    nobody looks at costs no decoding (issue 15: lazy snapshots).
    """

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], Picture] = {}
        self._keyframes: dict[tuple[str, str], Callable[[], Picture | None]] = {}
        self._lock = threading.Lock()
        self.lazy_decodes = 0

    def put(self, snap: Picture) -> None:
        with self._lock:
            self._latest[(snap.camera_id, snap.stream)] = snap

    def put_keyframe(self, camera_id: str, stream: str, decode: Callable[[], Picture | None]) -> None:
        """The newest keyframe of a stream, as a decode to run only if someone asks."""
        with self._lock:
            self._keyframes[(camera_id, stream)] = decode

    def latest(self, camera_id: str) -> Picture | None:
        """The sub-stream's picture where there is one (smaller), else the main's."""
        for key in ((camera_id, "sub"), (camera_id, "main")):
            with self._lock:
                decode = self._keyframes.pop(key, None)
            if decode is not None:
                pic = decode()
                self.lazy_decodes += 1
                if pic is not None:
                    self.put(pic)
        with self._lock:
            return self._latest.get((camera_id, "sub")) or self._latest.get((camera_id, "main"))

    def forget(self, camera_id: str, stream: str) -> None:
        with self._lock:
            self._latest.pop((camera_id, stream), None)
            self._keyframes.pop((camera_id, stream), None)


def decode_keyframe(codec: str, nals: tuple[bytes, ...], parameter_sets: tuple[bytes, ...]) -> np.ndarray | None:
    """One keyframe (NAL units, parameter sets put in front when it has none) as a BGR image."""
    import av  # on the first picture asked for (lazy snapshots): not with the worker

    ctx: Any = av.CodecContext.create("hevc" if codec == "h265" else "h264", "r")
    data = b"".join(b"\x00\x00\x00\x01" + n for n in (*parameter_sets, *nals))
    try:
        frames = ctx.decode(av.Packet(data)) + ctx.decode(None)
    except (av.error.FFmpegError, ValueError):
        return None
    return frames[0].to_ndarray(format="bgr24") if frames else None


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
        self._clock = clock
        self._thumbs = _THUMBNAILS

    def close(self) -> None:
        self.tap.close()

    @property
    def unreadable(self) -> int:
        """Keyframes the decoder refused."""
        return self.decoder.unreadable

    def tap_access_unit(self, au: AccessUnit, source: Any) -> None:
        """A native session's tap (on its ingest loop): keep the keyframe for ``latest`` to
        decode on request; decode one a thumbnail interval, on this snapshotter's thread."""
        if not au.keyframe:
            return
        t_us = self._clock()
        codec, params = source.codec, tuple(source.parameter_sets)

        def decode() -> Picture | None:
            image = decode_keyframe(codec, au.nals, params)
            return None if image is None else picture(image, self.camera_id, self.stream, t_us)
        self.store.put_keyframe(self.camera_id, self.stream, decode)
        bucket = t_us // self.thumbnail_interval_us
        if self.media is not None and bucket != self._last_bucket:
            self._last_bucket = bucket
            self._thumbs.submit(self._thumbnail, codec, au.nals, params, t_us)

    def _thumbnail(self, codec: str, nals: tuple[bytes, ...], params: tuple[bytes, ...], t_us: int) -> None:
        image = decode_keyframe(codec, nals, params)
        if image is None or self.media is None:
            return
        thumb = picture(image, self.camera_id, self.stream, t_us, quality=THUMBNAIL_QUALITY, width=self.thumbnail_width)
        try:
            self.media.add_thumbnail(thumb)
            self.thumbnails += 1
        except Exception:  # noqa: BLE001 - the index being down must not stop snapshots
            log.exception("camera %s: could not store a thumbnail", self.camera_id)

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
