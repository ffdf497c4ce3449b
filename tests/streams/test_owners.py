"""API nodes (no supervisor) answer status and the live owner from what workers put in the index."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from config.settings import Settings
from storage import CameraStatusTable, LeaseTable, SegmentIndex, now_us
from streams.api_registry import statuses
from streams.context import AppContext
from streams.owners import owner_base_url

S = 1_000_000


def api_node(engine: Engine, tmp_path: Path) -> AppContext:
    settings = Settings(data_dir=tmp_path, lease_ttl_seconds=15)
    return AppContext(settings=settings, index=SegmentIndex(engine), registry=None, store=None)  # type: ignore[arg-type]


def test_owner_base_url(index_engine: Engine, tmp_path: Path) -> None:
    ctx = api_node(index_engine, tmp_path)
    leases = LeaseTable(index_engine)
    leases.ensure(["c1", "c2"])
    leases.heartbeat("w1", now_us=now_us(), advertise_url="http://10.0.3.7:8080")
    leases.acquire("w1", ["c1"], 1, now_us=now_us(), ttl_us=15 * S)
    assert owner_base_url(ctx, "c1") == "http://10.0.3.7:8080"
    assert owner_base_url(ctx, "c2") is None  # nobody holds it
    assert owner_base_url(ctx, "unknown") is None


def test_api_node_statuses_come_from_the_index(index_engine: Engine, tmp_path: Path) -> None:
    ctx = api_node(index_engine, tmp_path)
    table = CameraStatusTable(index_engine)
    st = {"camera_id": "c1", "stream": "main", "state": "recording", "fps": 25.0, "bitrate_bps": 1e6, "last_error": ""}
    table.publish("w1", [st], now_us=now_us())
    table.publish("w2", [{**st, "camera_id": "c2"}], now_us=now_us() - 31 * S)  # w2 died 31 s ago
    got = statuses(ctx)
    assert set(got) == {("c1", "main")}
    assert got[("c1", "main")]["state"] == "recording" and got[("c1", "main")]["worker_id"] == "w1"
