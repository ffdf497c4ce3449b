"""The one JPEG encoder: camera frames (BGR arrays) to ``Picture`` s, downscaled on request.

Used for the latest snapshot of each camera, the timeline thumbnails and the archive's
``snapshot.jpg``. A picture is never upscaled: asked for a width at or above the
frame's, the frame's own size is kept (an upscaled JPEG only costs bytes and suggests
detail the camera did not record, which matters for evidence).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.index.media import Picture

if TYPE_CHECKING:
    import numpy as np

# OpenCV and NumPy load with the first picture, not with the module: the API's routes import
# it, and an ingest worker that never makes a picture should not carry them.

__all__ = ["JPEG_QUALITY", "Picture", "encode_jpeg", "picture", "resize_jpeg", "scaled_size"]

JPEG_QUALITY = 80


def scaled_size(width: int, height: int, to_width: int | None) -> tuple[int, int]:
    """(width, height) downscaled (never up) to ``to_width``, keeping the aspect."""
    if to_width is None or not 0 < to_width < width:
        return width, height
    return to_width, max(2, round(height * to_width / width))


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY, width: int | None = None) -> bytes:
    """JPEG of a BGR image, downscaled (never up) to ``width`` keeping the aspect."""
    import cv2

    size = scaled_size(image.shape[1], image.shape[0], width)
    if size != (image.shape[1], image.shape[0]):
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV refuses only impossible images
        raise ValueError(f"JPEG encoding failed for a {image.shape[1]}x{image.shape[0]} image")
    return buf.tobytes()


def picture(image: np.ndarray, camera_id: str, stream: str, t_us: int, *, quality: int = JPEG_QUALITY,
            width: int | None = None) -> Picture:
    """``image`` (BGR, shown from wall time ``t_us``) as a ``Picture``, downscaled (never up) to ``width``."""
    w, h = scaled_size(image.shape[1], image.shape[0], width)
    return Picture(camera_id, stream, t_us, w, h, encode_jpeg(image, quality, width))


def resize_jpeg(jpeg: bytes, width: int, quality: int = JPEG_QUALITY) -> bytes:
    """A stored JPEG at a smaller ``width`` (for ``latest.jpg?width=``); never larger."""
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a JPEG image")
    if width >= image.shape[1]:
        return jpeg
    return encode_jpeg(image, quality, width)
