"""A live world: GStreamer cameras, a real Supervisor recording them, and the app on a real uvicorn.

Package-scoped and shared by the live tests, because cameras and sessions take seconds to
start. WebRTC host candidates are pinned to 127.0.0.1 (``webrtc_host_addresses``), the
loopback work-around documented in docs/live.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from argon2 import PasswordHasher

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.supervisor import Supervisor
from streams.access.audit import AuditLog
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex
from storage.index.registry import Registry
from storage.index.credentials import load_cipher
from storage.objects.open import open_object_store
from streams.access.users import UserStore
from streams.app import create_app
from streams.access.guard import AuthState
from streams.context import AppContext
from streams.live.restream import install_restream
from streams.access.tokens import TokenSigner
from tests.support.http import UvicornThread
from tests.support.cameras import Mount, free_port

PASSWORD = "correct horse battery"
MAX_VIEWERS = 10


@dataclass
class LiveWorld:
    base: str
    rtsp_port: int
    supervisor: Supervisor
    cameras: object  # the CameraServer
    state: AuthState
    audit: AuditLog
    registry: Registry

    def headers(self, name: str = "viewer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.state.tokens.issue('access', name)[0]}"}

    def hub(self, camera_id: str, stream: str = "main"):  # type: ignore[no-untyped-def]
        return self.supervisor.live.get(camera_id, stream)

    def wait_online(self, camera_id: str, stream: str = "main", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hub = self.hub(camera_id, stream)
            if hub is not None and hub.online and hub.has_gop:
                return
            time.sleep(0.1)
        raise AssertionError(f"camera {camera_id}/{stream} did not come online")


@pytest.fixture
def live(live_world: LiveWorld) -> LiveWorld:
    """The shared world, with cam1 online (a test before may have restarted the cameras)."""
    live_world.wait_online("cam1")
    return live_world


@pytest.fixture(scope="package")
def live_world(camera_server, tmp_path_factory) -> Iterator[LiveWorld]:
    tmp: Path = tmp_path_factory.mktemp("live")
    cams = camera_server({
        "/cam1": Mount("h264", size=(640, 360), label="cam1", gop_seconds=1),
        "/cam1sub": Mount("h264", size=(320, 180), label="cam1sub", gop_seconds=1),
        "/cam265": Mount("h265", size=(640, 360), label="cam265", gop_seconds=1),
    })
    dead = f"rtsp://127.0.0.1:{free_port()}/nothing"
    rtsp_port = free_port()
    settings = Settings(data_dir=tmp, webrtc_host_addresses=["127.0.0.1"], live_max_viewers=MAX_VIEWERS,
                        rtsp_bind=f"127.0.0.1:{rtsp_port}", connect_timeout_seconds=2, stall_timeout_seconds=3,
                        segment_target_seconds=10, worker_id="worker-test")
    engine = open_engine(settings.database_url)
    cipher = load_cipher(tmp)
    registry = Registry(engine, cipher)
    registry.add_region(Region(code="county", name="County"))
    registry.add_region(Region(code="t1", name="Town 1", parent="county"))
    registry.add_region(Region(code="t2", name="Town 2", parent="county"))
    registry.add_camera(Camera(id="cam1", name="Gate", region="t1", main_url=cams.url("/cam1"), sub_url=cams.url("/cam1sub")))
    registry.add_camera(Camera(id="cam265", name="H.265", region="t1", main_url=cams.url("/cam265")))
    registry.add_camera(Camera(id="dead", name="Offline", region="t2", main_url=dead))
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("viewer", PASSWORD, "viewer", ["*"])
    users.add("townviewer", PASSWORD, "viewer", ["t2"])
    audit = AuditLog(engine)
    state = AuthState(users=users, audit=audit, tokens=TokenSigner(cipher.derive("sharpeyes token signing v1")))
    index = SegmentIndex(engine)
    store = open_object_store(settings)
    supervisor = Supervisor(settings, registry, index, store)
    ctx = AppContext(settings=settings, index=index, registry=registry, store=store, supervisor=supervisor,
                     auth=state)
    app = create_app(ctx)
    install_restream(app, supervisor.live, settings.rtsp_bind)
    port = free_port()
    server = UvicornThread(app, port).start()  # binds the hubs to its loop before cameras start
    supervisor.start()
    world = LiveWorld(f"http://127.0.0.1:{port}", rtsp_port, supervisor, cams, state, audit, registry)
    try:
        world.wait_online("cam1")
        yield world
    finally:
        server.stop()
        supervisor.close()
        engine.dispose()


def get(world: LiveWorld, path: str, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.get(world.base + path, headers=world.headers(), timeout=10, **kw)
