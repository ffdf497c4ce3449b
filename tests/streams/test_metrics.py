"""``/metrics`` and ``/api/health`` against a real supervisor recording a real RTSP camera."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.supervisor import Supervisor
from sharpeyes.services import Services
from streams.access.users import UserStore
from streams.app import create_app
from streams.context import AppContext
from tests.support.cameras import Mount

PASSWORD = "Sup3rS3cretCam!"


@pytest.fixture(scope="module")
def camera(camera_server):  # type: ignore[no-untyped-def]
    srv = camera_server({"/m1": Mount("h264", size=(640, 360), label="m1", user="admin", password=PASSWORD)})
    return srv.url("/m1", user="admin", password=PASSWORD)


@pytest.fixture
def running(tmp_path: Path, camera: str) -> Iterator[tuple[TestClient, Services]]:
    svc = Services(Settings(data_dir=tmp_path, segment_target_seconds=2, worker_id="w1"))
    svc.registry.add_region(Region(code="county", name="County"))
    svc.registry.add_region(Region(code="t1", name="T1", parent="county"))
    svc.registry.add_camera(Camera(id="cam-m1", name="m1", region="t1", main_url=camera))
    svc.registry.add_camera(Camera(id="cam-off", name="off", region="t1", main_url="rtsp://127.0.0.1:9/none"))
    sup = Supervisor(svc.settings, svc.registry, svc.index, svc.store)
    sup.start()
    app = create_app(AppContext(settings=svc.settings, index=svc.index, registry=svc.registry,
                                store=svc.store, supervisor=sup))
    try:
        with TestClient(app) as client:
            # /metrics is opt-in: a scraper sends an operator key (or scrapes from metrics_allow_ips).
            key, _ = UserStore(svc.engine).create_api_key("prometheus", "operator")
            client.headers["Authorization"] = f"Bearer {key}"
            yield client, svc
    finally:
        sup.close()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _wait(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def test_metrics_read_live_state_and_the_index_without_secrets(running) -> None:  # type: ignore[no-untyped-def]
    client, svc = running
    _wait(lambda: svc.index.segment_count() >= 2)
    r = client.get("/metrics")
    assert r.status_code == 200 and PASSWORD not in r.text and "rtsp://" not in r.text
    m = _samples(r.text)
    cam = (("camera", "cam-m1"), ("region", "t1"), ("stream", "main"))
    assert m[("sharpeyes_camera_up", cam)] == 1.0
    assert m[("sharpeyes_camera_up", (("camera", "cam-off"), ("region", "t1"), ("stream", "main")))] == 0.0
    assert m[("sharpeyes_camera_fps", (("camera", "cam-m1"), ("stream", "main")))] > 20
    assert 0 < m[("sharpeyes_camera_coverage_ratio", cam)] < 1  # a few seconds of the hour
    assert m[("sharpeyes_camera_gap_open", (("camera", "cam-off"), ("reason", "offline"), ("stream", "main")))] == 1
    w = (("worker", "w1"),)
    assert m[("sharpeyes_uploads_total", w)] >= 2
    assert m[("sharpeyes_store_available", w)] == 1.0
    assert m[("sharpeyes_storage_losses_total", w)] == 0
    assert ("sharpeyes_spool_backlog_bytes", w) in m and m[("sharpeyes_leases", w)] == 0


def test_health_needs_an_operator_and_reports_the_fleet(running) -> None:  # type: ignore[no-untyped-def]
    client, svc = running
    assert client.get("/api/health", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    UserStore(svc.engine).add("op", "operator password 1", "operator", ["*"])
    token = client.post("/api/auth/token", json={"username": "op", "password": "operator password 1"}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    _wait(lambda: client.get("/api/health", headers=headers).json()["online"] == 1)
    h = client.get("/api/health", headers=headers).json()
    assert h["cameras"] == 2 and h["online_rate"] == 0.5 and h["target"] == 0.98 and h["ok"] is False
    regions = {r["code"]: r for r in h["regions"]}
    assert regions["county"]["cameras"] == 2 and regions["t1"]["online"] == 1
    assert "spool_backlog_bytes" in h["spool"]
    assert PASSWORD not in str(h)
