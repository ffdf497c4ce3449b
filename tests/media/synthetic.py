"""A synthetic clip with known motion: a static textured scene plus sensor noise, and a
square that crosses the picture during known seconds (and is absent otherwise)."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np


def scene(width: int, height: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))[:height, :width].copy()


def motion_clip(moving: set[int], seconds: int, *, size: tuple[int, int] = (640, 360), fps: int = 10,
                noise: float = 4.0, box: int = 48, codec: str = "libx264") -> bytes:
    """An MP4 (bytes) of ``seconds`` seconds where the square moves during the seconds in ``moving``."""
    width, height = size
    background = scene(width, height)
    rng = np.random.default_rng(2)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream(codec, rate=fps)
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.codec_context.options = {"preset": "ultrafast", "g": str(fps * 2)}
        for i in range(seconds * fps):
            img = background.astype(np.int16)
            second = i // fps
            if second in moving:
                # Crosses the picture once a second: a fresh position every frame.
                phase = (i % fps) / fps
                x = int(phase * (width - box))
                y = int(height / 3 + (second % 3) * height / 6)
                img[y:y + box, x:x + box] = (20, 230, 240)
            img += rng.normal(0, noise, img.shape).astype(np.int16)
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in st.encode(frame):
                out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    return buf.getvalue()
