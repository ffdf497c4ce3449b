"""One JPEG from the archive: the frame shown at an instant, decoded from its GOP only."""

from __future__ import annotations

import io

from storage.archive.clips import ClipPlan
from storage.index.media import Picture
from storage.objects.store import ObjectStore

__all__ = ["snapshot_jpeg"]

ARCHIVE_JPEG_QUALITY = 90  # evidence stills: finer than the live snapshots' 80


def snapshot_jpeg(plan: ClipPlan, store: ObjectStore, width: int | None = None,
                  quality: int = ARCHIVE_JPEG_QUALITY) -> Picture:
    """The last frame of ``plan`` (plan ``[at, at + 1 us)``: the frame on screen at ``at``)
    as JPEG, downscaled to ``width`` keeping the aspect ratio when given (never upscaled:
    a ``width`` at or above the frame's keeps the frame's size).

    Only the one fragment (GOP) holding ``at`` is fetched; decoding starts at its keyframe.
    The picture's ``t_us`` is when that frame starts (up to a frame before ``at``).
    """
    # PyAV and OpenCV load on the first archive still, not with the API: an ingest worker that
    # never serves one does not carry them (docs/native-ingest.md, RSS).
    import av

    from ingest.media.jpeg import picture

    data = b"".join(plan.iter_bytes(store))
    last = None
    with av.open(io.BytesIO(data), "r", format="mp4") as container:
        for frame in container.decode(video=0):
            last = frame
    if last is None:
        raise ValueError(f"camera {plan.camera_id}: no frame decoded at {plan.first_us}")
    return picture(last.to_ndarray(format="bgr24"), plan.camera_id, plan.stream, plan.first_frame_us,
                   quality=quality, width=width)
