"""The whole system for the browser tests: GStreamer cameras, a real Supervisor recording them
into a local store with 4 s segments, the app on a real uvicorn, and users of each role.

Package-scoped: cameras and sessions take seconds to start, and the investigator test needs
recorded minutes behind it. WebRTC host candidates are pinned to 127.0.0.1 (the loopback
work-around in docs/live.md). Node scenario scripts drive Debian's Chromium via
playwright-core (installed by ``npm ci --prefix tests/browser``, see tests/run.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from argon2 import PasswordHasher

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.supervisor import Supervisor
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex
from storage.index.registry import Registry
from storage.index.credentials import load_cipher
from storage.objects.open import open_object_store
from streams.access.users import UserStore
from streams.app import create_app
from streams.context import AppContext
from tests.support.http import UvicornThread
from tests.support.cameras import Mount, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
PASSWORD = "correct horse battery"
CHROMIUM = os.environ.get("SHARPEYES_CHROMIUM", "/usr/bin/chromium")
SIZE = (640, 360)


def _skip_reason() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (tests/run.sh installs the browser test tools)"
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed: npm ci --prefix tests/browser"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}"
    return None


@dataclass
class ConsoleWorld:
    base: str
    data_dir: Path
    settings: Settings
    supervisor: Supervisor
    registry: Registry
    index: SegmentIndex
    cameras: Any  # CameraServer of the always-on cameras
    gap_camera: Any  # CameraServer of cam-g alone (stopped by the investigator test)
    spare: Any  # CameraServer with /new, registered by the operator through the form

    def token(self, user: str) -> str:
        r = httpx.post(f"{self.base}/api/auth/token", json={"username": user, "password": PASSWORD}, timeout=10)
        r.raise_for_status()
        return r.json()["access_token"]

    def get(self, path: str, user: str = "admin", **kw: Any) -> httpx.Response:
        return httpx.get(self.base + path, headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=10, **kw)

    def wait_recording(self, camera_id: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = {(s.camera_id, s.stream): s.state for s in self.supervisor.statuses()}
            if st.get((camera_id, "main")) == "recording":
                return
            time.sleep(0.2)
        raise AssertionError(f"camera {camera_id} is not recording after {timeout} s")

    def run(self, script: str, timeout: float = 180, **env: str) -> dict[str, Any]:
        """Run a scenario script; its last stdout line is the JSON result."""
        full = {**os.environ, "SHARPEYES_BASE": self.base, "SHARPEYES_PASSWORD": PASSWORD,
                "SHARPEYES_ARTIFACTS": str(ARTIFACTS), "CHROMIUM": CHROMIUM, **env}
        proc = subprocess.run(["node", str(HERE / script)], cwd=ROOT, env=full, capture_output=True,
                              text=True, timeout=timeout)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        result = json.loads(lines[-1]) if lines else {"ok": False, "error": "no result"}
        assert result.get("ok"), f"{script} failed: {result.get('error')}\nstderr:\n{proc.stderr[-4000:]}"
        return result


@pytest.fixture(scope="package")
def console_world(camera_server, tmp_path_factory) -> Iterator[ConsoleWorld]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tmp: Path = tmp_path_factory.mktemp("console")
    cams = camera_server({
        "/a": Mount("h264", size=SIZE, label="cam-a", gop_seconds=1),
        "/a_sub": Mount("h264", size=(320, 180), label="cam-a-sub", gop_seconds=1),
        "/b": Mount("h264", size=SIZE, label="cam-b", gop_seconds=1),
        "/c": Mount("h264", size=SIZE, label="cam-c", gop_seconds=1),
        "/d": Mount("h264", size=SIZE, label="cam-d", gop_seconds=1),
    })
    gap = camera_server({"/g": Mount("h264", size=SIZE, label="cam-g", gop_seconds=1)})
    spare = camera_server({"/new": Mount("h264", size=SIZE, label="cam-new", gop_seconds=1)})
    extra: dict[str, Any] = {}
    if "webrtc_host_addresses" in Settings.model_fields:
        extra["webrtc_host_addresses"] = ["127.0.0.1"]
    settings = Settings(data_dir=tmp, probe_allow_ranges=["127.0.0.0/8"], segment_target_seconds=4, connect_timeout_seconds=2, stall_timeout_seconds=3,
                        registry_poll_seconds=1, worker_id="browser-test",
                        rtsp_bind=f"127.0.0.1:{free_port()}", **extra)
    engine = open_engine(settings.database_url)
    registry = Registry(engine, load_cipher(tmp))
    for code, name, parent in [("county", "Qingshan County", None), ("t1", "East Town", "county"),
                               ("v1", "Willow Village", "t1"), ("t2", "West Town", "county"), ("v2", "Pine Village", "t2")]:
        registry.add_region(Region(code=code, name=name, parent=parent))
    registry.add_camera(Camera(id="cam-a", name="Gate A", region="v1", main_url=cams.url("/a"), sub_url=cams.url("/a_sub")))
    registry.add_camera(Camera(id="cam-b", name="Square B", region="v1", main_url=cams.url("/b")))
    registry.add_camera(Camera(id="cam-c", name="Road C", region="t1", main_url=cams.url("/c")))
    registry.add_camera(Camera(id="cam-g", name="School G", region="t1", main_url=gap.url("/g")))
    registry.add_camera(Camera(id="cam-d", name="Bridge D", region="v2", main_url=cams.url("/d")))
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    for name, role, scope in [("admin", "admin", ["*"]), ("operator", "operator", ["*"]), ("viewer", "viewer", ["*"]),
                              ("investigator", "investigator", ["*"]), ("eastviewer", "viewer", ["t1"])]:
        users.add(name, PASSWORD, role, scope)
    index = SegmentIndex(engine)
    store = open_object_store(settings)
    supervisor = Supervisor(settings, registry, index, store)
    ctx = AppContext(settings=settings, index=index, registry=registry, store=store, supervisor=supervisor)
    app = create_app(ctx)
    server = UvicornThread(app, free_port()).start()  # binds the live hubs to its loop before cameras start
    supervisor.start()
    world = ConsoleWorld(f"http://127.0.0.1:{server.port}", tmp, settings, supervisor, registry, index, cams, gap, spare)
    try:
        for cid in ("cam-a", "cam-b", "cam-c", "cam-d", "cam-g"):
            world.wait_recording(cid)
        yield world
    finally:
        supervisor.close()  # first: its live taps post to the server's event loop
        server.stop()
        engine.dispose()
