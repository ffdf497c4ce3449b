"""Choosing the object store from settings, and the segment object key layout."""

from __future__ import annotations

from datetime import datetime, timezone

from config.settings import Settings
from storage.objects.local import LocalObjectStore
from storage.objects.store import ObjectStore, check_key
from storage.objects.s3 import S3ObjectStore


def open_object_store(settings: Settings) -> ObjectStore:
    """S3/MinIO when ``settings.s3_endpoint`` is set, else the local directory
    ``settings.objects_dir``. Does no network I/O: call ``check()`` to probe."""
    if settings.s3_endpoint:
        return S3ObjectStore(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key,
            settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region,
        )
    assert settings.objects_dir is not None  # derived by Settings when not given
    return LocalObjectStore(settings.objects_dir)


def segment_key(camera_id: str, stream: str, start_us: int, duration_ms: int) -> str:
    """``{camera_id}/{stream}/{YYYY}/{MM}/{DD}/{HH}/{start_us}-{duration_ms}.mp4``, the hour
    being that of ``start_us`` in UTC (never local time: keys must not move with DST
    or with the server's time zone)."""
    if start_us < 0 or duration_ms < 0:
        raise ValueError(f"segment start {start_us} us and duration {duration_ms} ms must not be negative")
    t = datetime.fromtimestamp(start_us // 1_000_000, tz=timezone.utc)
    key = f"{camera_id}/{stream}/{t:%Y/%m/%d/%H}/{start_us}-{duration_ms}.mp4"
    return check_key(key)
