"""The ``cluster`` fixture: worker processes over a fresh PostgreSQL database and a moto S3 bucket
(TTL 4 s, 4 s segments; tests that need other settings build their own ``Cluster``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.scale.cluster import Cluster


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path, s3_server, s3_bucket: str) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    c = Cluster.create(postgres_url, tmp_path, s3_server, s3_bucket, ttl=4.0, segment_seconds=4.0)
    try:
        yield c
    finally:
        c.close()
