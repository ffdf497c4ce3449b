"""A real ``Supervisor`` with ``MediaPipelines`` over a local index and object store."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pytest

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.media.pipelines import MediaPipelines
from ingest.supervisor import Supervisor
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex
from storage.objects.local import LocalObjectStore
from storage.index.media import MediaIndex
from storage.index.registry import Registry


@dataclass
class Rig:
    settings: Settings
    registry: Registry
    index: SegmentIndex
    media: MediaIndex
    pipelines: MediaPipelines
    supervisor: Supervisor

    def add(self, camera_id: str, url: str, **fields) -> Camera:
        cam = Camera(id=camera_id, name=camera_id, region="r1", main_url=url, **fields)
        self.registry.add_camera(cam)
        self.supervisor.reconcile()
        return cam


def wait_for(check: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Poll ``check`` until it returns something true (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def media_rig(tmp_path):
    rigs: list[Supervisor] = []

    def make(**overrides) -> Rig:
        settings = Settings(data_dir=tmp_path, segment_target_seconds=2, registry_poll_seconds=5, **overrides)
        engine = open_engine(settings.database_url)
        registry, index, media = Registry(engine), SegmentIndex(engine), MediaIndex(engine)
        registry.add_region(Region(code="r1", name="Village"))
        pipelines = MediaPipelines(settings, media, clock=lambda: time.time_ns() // 1000)
        sup = Supervisor(settings, registry, index, LocalObjectStore(settings.objects_dir),
                         attach=pipelines.attach)
        sup.start()
        rigs.append(sup)
        return Rig(settings, registry, index, media, pipelines, sup)

    yield make
    for sup in rigs:
        sup.close()
