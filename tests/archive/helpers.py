"""Reading clips back the way players do: PyAV decode, ffprobe, frame codes."""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av

from tests.archive.recorded import FRAME_US, T0
from tests.support.clips import read_frame_code


@dataclass(frozen=True)
class Decoded:
    time: float  # presentation time, s; FFmpeg applies the edit list's start as a shift
    code: int  # burned-in frame index

    @property
    def wall_us(self) -> int:
        return T0 + self.code * FRAME_US


def decode(data: bytes | str) -> list[Decoded]:
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    with av.open(src) as c:
        return [Decoded(float(f.time), read_frame_code(f.to_ndarray(format="gray"))) for f in c.decode(video=0)]


def presented(frames: list[Decoded]) -> list[Decoded]:
    """Frames a player shows: those still on screen after clip time 0, a frame lasting
    until the next one's time. The GOP's pre-roll (decoded, folded before 0) is not."""
    out = []
    for i, f in enumerate(frames):
        until = frames[i + 1].time if i + 1 < len(frames) else float("inf")
        if until > 1e-6:
            out.append(f)
    return out


def code_at(t_us: int) -> int:
    """The frame code on screen at wall time ``t_us``."""
    return (t_us - T0) // FRAME_US


def ffprobe(path: Path | str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration,start_time:stream=codec_name,width,height",
         "-of", "json", str(path)], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)
