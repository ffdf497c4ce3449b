"""API nodes (no supervisor) answer status from what workers put in the index."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from config.settings import Settings
from storage import CameraStatusTable, SegmentIndex
from config.times import now_us
from streams.api.registry import statuses
from streams.context import AppContext

S = 1_000_000


def api_node(engine: Engine, tmp_path: Path) -> AppContext:
    settings = Settings(data_dir=tmp_path, lease_ttl_seconds=15)
    return AppContext(settings=settings, index=SegmentIndex(engine), registry=None, store=None)  # type: ignore[arg-type]


def test_api_node_statuses_come_from_the_index(index_engine: Engine, tmp_path: Path) -> None:
    ctx = api_node(index_engine, tmp_path)
    table = CameraStatusTable(index_engine)
    st = {"camera_id": "c1", "stream": "main", "state": "recording", "fps": 25.0, "bitrate_bps": 1e6, "last_error": ""}
    table.publish("w1", [st], now_us=now_us())
    table.publish("w2", [{**st, "camera_id": "c2"}], now_us=now_us() - 31 * S)  # w2 died 31 s ago
    got = statuses(ctx)
    assert set(got) == {("c1", "main")}
    assert got[("c1", "main")]["state"] == "recording" and got[("c1", "main")]["worker_id"] == "w1"
