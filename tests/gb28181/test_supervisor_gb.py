"""A process without a GB/T 28181 server leaves GB channel cameras alone and records the rest."""

from __future__ import annotations

from pathlib import Path

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.supervisor import Supervisor
from sharpeyes.services import Services


def test_reconcile_without_a_session_factory_skips_gb_channels(tmp_path: Path) -> None:
    svc = Services(Settings(data_dir=tmp_path))
    svc.registry.add_region(Region(code="r", name="R"))
    svc.registry.add_cameras([
        Camera.model_validate({"id": "34010203001310000001", "name": "东门", "region": "r", "source": "gb28181",
                               "gb_device_id": "34020000001320000001"}),
        Camera(id="cam-rtsp", name="RTSP", region="r", main_url="rtsp://127.0.0.1:9/none", retention_days=30),
    ])
    sup = Supervisor(svc.settings, svc.registry, svc.index, svc.store)  # not started: reconcile by hand
    try:
        sup.reconcile()
        assert set(sup.sessions) == {("cam-rtsp", "main")}  # and no exception stopped the reconcile
    finally:
        sup.close()
