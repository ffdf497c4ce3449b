"""Object keys for segments (placeholder until the store implementations land)."""

from __future__ import annotations

from datetime import datetime, timezone


def segment_key(camera_id: str, stream: str, start_us: int, duration_ms: int) -> str:
    """``{camera}/{stream}/{YYYY}/{MM}/{DD}/{HH}/{start_us}-{duration_ms}.mp4``, in UTC."""
    t = datetime.fromtimestamp(start_us / 1_000_000, tz=timezone.utc)
    return f"{camera_id}/{stream}/{t:%Y/%m/%d/%H}/{start_us}-{duration_ms}.mp4"
