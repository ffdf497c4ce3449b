"""One JPEG from the archive: the frame shown at an instant, decoded from its GOP only."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import cv2

from storage.archive.clips import ClipPlan
from storage.objects.store import ObjectStore

__all__ = ["Snapshot", "snapshot_jpeg"]


@dataclass(frozen=True)
class Snapshot:
    jpeg: bytes
    frame_us: int  # wall time the frame is presented from
    width: int
    height: int


def snapshot_jpeg(plan: ClipPlan, store: ObjectStore, width: int | None = None, quality: int = 90) -> Snapshot:
    """The last frame of ``plan`` (plan ``[at, at + 1 us)``: the frame on screen at ``at``),
    scaled to ``width`` keeping the aspect ratio when given, as JPEG.

    Only the one fragment (GOP) holding ``at`` is fetched; decoding starts at its keyframe.
    """
    data = b"".join(plan.iter_bytes(store))
    last = None
    with av.open(io.BytesIO(data), format="mp4") as container:
        for frame in container.decode(video=0):
            last = frame
    if last is None:
        raise ValueError(f"camera {plan.camera_id}: no frame decoded at {plan.first_us}")
    image = last.to_ndarray(format="bgr24")
    h, w = image.shape[:2]
    if width is not None and width != w:
        height = max(1, round(h * width / w))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if width < w else cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"camera {plan.camera_id}: JPEG encoding failed")
    # The plan covers [at, at + 1 us): its last frame is the one on screen at ``at``,
    # whose own start time the plan knows (it may be up to a frame before ``at``).
    frame_us = plan.first_frame_us
    return Snapshot(buf.tobytes(), frame_us, image.shape[1], image.shape[0])
