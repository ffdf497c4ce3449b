"""Test clips for the camera peers, generated at test time with the ``ffmpeg`` CLI.

Every clip loops cleanly: its length (default 24 s) is a whole number of GOPs (default
2 s = 50 frames at 25 fps) and all motion in the picture is periodic over the loop, so a
camera that replays the clip forever shows no jump at the seam. 24 s is also a whole
number of 1024-sample AAC frames at 48 kHz (1125), so the audio track loops cleanly too.

Every frame carries a machine-readable *frame code*: its index within the loop, drawn as
24 black/white blocks across the top rows (20 bits of index + a 4-bit check). Read it
back from any decoded frame with :func:`read_frame_code`; it survives lossy coding.
A human-readable label (camera name, frame number, loop time) is drawn below it.

Usage::

    from tests.support.clips import make_clip, read_frame_code

    clip = make_clip("h264", size=(640, 360), label="cam1")
    clip.video            # Path of the Annex-B elementary stream (.h264 / .h265 / .mjpeg)
    clip.audio            # Path of an ADTS .aac file (kind "h264_aac") or None
    clip.frames, clip.fps, clip.gop, clip.codec

    for frame in av.open(url).decode(video=0):
        idx = read_frame_code(frame.to_ndarray(format="gray"))

Kinds: ``h264`` (libx264, no B-frames, closed fixed GOP), ``h265`` (libx265, same),
``h264_slices`` (4 slices per frame), ``h264_aac`` (H.264 + 1 kHz sine AAC), ``mjpeg``,
``h264_bframes`` (libx264 High, 3 B-frames in a pyramid, closed fixed GOP; in MP4, because
a B-frame stream needs its timestamps from a container: ``clip.video`` is an ``.mp4``).

Clips are cached under ``tests/.cache/clips/`` keyed by every parameter (and a generator
version), written atomically, so parallel test processes can share the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

GENERATOR_VERSION = 2
CACHE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "clips"
KINDS = ("h264", "h265", "h264_slices", "h264_aac", "mjpeg", "h264_bframes")

CODE_BITS = 24  # 20 bits of value + 4 check bits
VALUE_BITS = 20
AUDIO_RATE = 48000
TONE_HZ = 1000


@dataclass(frozen=True)
class Clip:
    kind: str
    codec: str  # "h264" | "h265" | "mjpeg"
    video: Path
    audio: Path | None
    width: int
    height: int
    fps: int
    frames: int
    gop: int
    label: str

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def to_json(self) -> dict:
        d = asdict(self)
        d["video"] = str(self.video)
        d["audio"] = str(self.audio) if self.audio else None
        return d


# --------------------------------------------------------------------------- frame code

def _code_geometry(width: int, height: int) -> tuple[int, int, int]:
    """(cell width, band top, band bottom) of the code band."""
    cell_w = width // CODE_BITS
    band_h = max(16, height // 14)
    return cell_w, 0, band_h


def _check(value: int) -> int:
    return (value * 0x9E37 >> 7 ^ value ^ (value >> 4) ^ (value >> 12) ^ 0x5) & 0xF


def encode_bits(value: int) -> list[int]:
    if not 0 <= value < (1 << VALUE_BITS):
        raise ValueError(value)
    word = (value << 4) | _check(value)
    return [(word >> (CODE_BITS - 1 - i)) & 1 for i in range(CODE_BITS)]


def draw_frame_code(img: np.ndarray, value: int) -> None:
    """Draw ``value`` as 24 blocks in the top rows of a BGR or gray image (in place)."""
    h, w = img.shape[:2]
    cell_w, top, bottom = _code_geometry(w, h)
    img[top:bottom, :] = 0
    for i, bit in enumerate(encode_bits(value)):
        if bit:
            img[top:bottom, i * cell_w:(i + 1) * cell_w] = 255


def read_frame_code(frame: np.ndarray) -> int:
    """Read the frame code back from a decoded frame.

    Accepts a gray (H, W) array (PyAV ``to_ndarray(format="gray")``) or a BGR/RGB
    (H, W, 3) array. For a planar yuv420p array use :func:`read_frame_code_yuv420p`. Raises
    ``ValueError`` if the check bits do not match (no code / corrupt frame).
    """
    a = np.asarray(frame)
    if a.ndim == 3:
        a = a.mean(axis=2)
    h, w = a.shape[:2]
    cell_w, top, bottom = _code_geometry(w, h)
    # sample the centre of each cell, away from block edges where coding blurs
    y0, y1 = top + (bottom - top) // 4, bottom - (bottom - top) // 4
    word = 0
    for i in range(CODE_BITS):
        x0 = i * cell_w + cell_w // 4
        x1 = (i + 1) * cell_w - cell_w // 4
        bit = 1 if float(a[y0:y1, x0:x1].mean()) > 128 else 0
        word = (word << 1) | bit
    value, check = word >> 4, word & 0xF
    if _check(value) != check:
        raise ValueError(f"frame code check failed (word {word:06x})")
    return value


def read_frame_code_yuv420p(frame: np.ndarray, height: int) -> int:
    """As :func:`read_frame_code` for a PyAV ``format="yuv420p"`` array (luma = first rows)."""
    return read_frame_code(np.asarray(frame)[:height])


# --------------------------------------------------------------------------- picture

def _background(width: int, height: int) -> np.ndarray:
    x = np.linspace(0, 1, width, dtype=np.float32)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    bg = np.empty((height, width, 3), np.uint8)
    bg[..., 0] = (60 + 120 * x + 0 * y).astype(np.uint8)
    bg[..., 1] = (60 + 120 * y + 0 * x).astype(np.uint8)
    bg[..., 2] = (90 + 60 * (1 - x) * y).astype(np.uint8)
    step = max(20, width // 24)
    bg[::step, :] = (40, 40, 40)
    bg[:, ::step] = (40, 40, 40)
    return bg


def _render_frames(width: int, height: int, fps: int, frames: int, label: str):
    bg = _background(width, height)
    scale = height / 1080
    r = max(8, int(70 * scale))
    font_scale = max(0.45, 1.6 * scale)
    thick = max(1, int(3 * scale))
    _, _, band = _code_geometry(width, height)
    for i in range(frames):
        img = bg.copy()
        phase = 2 * np.pi * i / frames
        # periodic motion: a circle on an ellipse, a bar sweeping twice per loop
        cx = int(width / 2 + width * 0.35 * np.cos(phase))
        cy = int(height * 0.6 + height * 0.25 * np.sin(phase))
        cv2.circle(img, (cx, cy), r, (0, 200, 255), -1)
        bx = int((i * 2 * width / frames) % width)
        cv2.rectangle(img, (bx, band + 4), (bx + max(6, width // 60), height), (255, 255, 255), -1)
        t = i / fps
        text = f"{label}  frame {i:05d}  t={t:06.2f}s"
        cv2.putText(img, text, (int(10 * max(scale, 0.5)), band + int(60 * scale) + 14),
                    cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(img, text, (int(10 * max(scale, 0.5)), band + int(60 * scale) + 14),
                    cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thick, cv2.LINE_AA)
        draw_frame_code(img, i)
        yield img


# --------------------------------------------------------------------------- encode

def _video_args(kind: str, width: int, height: int, fps: int, gop: int, bitrate: int) -> tuple[list[str], str, str]:
    br = ["-b:v", str(bitrate), "-maxrate", str(bitrate), "-bufsize", str(2 * bitrate)]
    if kind in ("h264", "h264_aac", "h264_slices"):
        params = "repeat-headers=1:open-gop=0"
        if kind == "h264_slices":
            params += ":slices=4"
        return ([
            "-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "main", "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0",
            "-x264-params", params, *br, "-f", "h264",
        ], "h264", ".h264")
    if kind == "h265":
        return ([
            "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0",
            "-x265-params",
            f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0:repeat-headers=1:"
            "log-level=error:pools=2:frame-threads=1",
            *br, "-f", "hevc",
        ], "h265", ".h265")
    if kind == "h264_bframes":
        # ultrafast keeps b-adapt off, so every GOP is the same I/P + 3 B pattern (b-pyramid:
        # reorder depth 2), like a camera set to "H.264 High".
        return ([
            "-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "3",
            "-x264-params", "repeat-headers=1:open-gop=0", *br, "-f", "mp4",
        ], "h264", ".mp4")
    if kind == "mjpeg":
        return (["-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", "6", "-f", "mjpeg"], "mjpeg", ".mjpeg")
    raise ValueError(f"unknown clip kind {kind!r}; one of {KINDS}")


def make_clip(kind: str, size: tuple[int, int] = (1920, 1080), fps: int = 25, seconds: int = 24,
              gop_seconds: int = 2, label: str = "cam", bitrate: int | None = None,
              cache_dir: Path | None = None) -> Clip:
    """Return a cached clip of ``kind``, generating it with ffmpeg if needed."""
    if kind not in KINDS:
        raise ValueError(f"unknown clip kind {kind!r}; one of {KINDS}")
    width, height = size
    gop = gop_seconds * fps
    frames = seconds * fps
    if frames % gop:
        raise ValueError("seconds must be a multiple of gop_seconds")
    if bitrate is None:
        bitrate = max(300_000, int(4_000_000 * width * height / (1920 * 1080)))
    params = dict(v=GENERATOR_VERSION, kind=kind, w=width, h=height, fps=fps, frames=frames,
                  gop=gop, label=label, bitrate=bitrate)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(cache_dir or CACHE_DIR)
    cache.mkdir(parents=True, exist_ok=True)
    vargs, codec, ext = _video_args(kind, width, height, fps, gop, bitrate)
    video = cache / f"{kind}-{width}x{height}-{key}{ext}"
    audio = cache / f"{kind}-{width}x{height}-{key}.aac" if kind == "h264_aac" else None
    clip = Clip(kind, codec, video, audio, width, height, fps, frames, gop, label)
    if video.exists() and (audio is None or audio.exists()):
        return clip

    tmp_v = Path(tempfile.mkstemp(dir=cache, prefix=".tmp-", suffix=ext)[1])
    try:
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-r", str(fps),
               "-i", "-", "-threads", "2", *vargs, str(tmp_v)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for img in _render_frames(width, height, fps, frames, label):
                proc.stdin.write(img.tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed for {kind}: {err}")
        if audio is not None:
            tmp_a = Path(tempfile.mkstemp(dir=cache, prefix=".tmp-", suffix=".aac")[1])
            try:
                subprocess.run(
                    ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                     "-i", f"sine=frequency={TONE_HZ}:sample_rate={AUDIO_RATE}:duration={seconds}",
                     "-ac", "1", "-c:a", "aac", "-b:a", "64k", "-f", "adts", str(tmp_a)],
                    check=True, capture_output=True)
                os.replace(tmp_a, audio)
            finally:
                tmp_a.unlink(missing_ok=True)
        os.replace(tmp_v, video)
    finally:
        tmp_v.unlink(missing_ok=True)
    return clip
