"""The world the security tests attack: real cameras, a real Supervisor, the app on a real uvicorn.

Package-scoped (cameras take seconds to start). Two townships, t1 and t2, a camera in each,
and a user of every role scoped to t1 plus a t2 viewer and an admin. Users that a test
disables or changes are made by that test (``world.new_user``), so tests do not disturb
one another. ``world.viewer()`` is a real MSE viewer that records when each frame came, for
the hostile-client tests and their benchmark (``tests/bench/hostile.py``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import websockets
from argon2 import PasswordHasher

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.media.pipelines import MediaPipelines
from ingest.supervisor import Supervisor
from config.times import now_us
from storage.db.engine import open_engine
from storage.index.credentials import load_cipher
from storage.index.registry import Registry
from storage.index.segments import SegmentIndex
from storage.objects.open import open_object_store
from streams.access.audit import AuditEntry, AuditLog
from streams.access.guard import AuthState
from streams.access.ratelimit import SignInLimiter
from streams.access.tokens import TokenSigner
from streams.access.users import UserStore
from streams.app import create_app
from streams.context import AppContext
from streams.live.restream import install_restream
from tests.support.cameras import Mount, free_port
from tests.support.http import UvicornThread

PASSWORD = "correct horse battery"
CAMERA_PASSWORD = "Cam3raS3cret!x"
MAX_VIEWS_PER_USER = 6
CONNECT_TIMEOUT_S = 3.0


@dataclass
class Viewer:
    """A real MSE viewer in a thread: the arrival time of every frame."""

    url: str
    arrivals: list[float] = field(default_factory=list)
    closed: str | None = None
    thread: threading.Thread | None = None
    _stop: bool = False

    def start(self) -> "Viewer":
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while len(self.arrivals) < 5:
            if time.monotonic() > deadline:
                raise AssertionError(f"the viewer got no frames ({self.closed})")
            time.sleep(0.05)
        return self

    async def _run(self) -> None:
        try:
            async with websockets.connect(self.url, max_size=None) as ws:
                while not self._stop:
                    try:
                        msg = await asyncio.wait_for(ws.recv(), 0.5)
                    except asyncio.TimeoutError:
                        continue
                    if isinstance(msg, bytes):
                        self.arrivals.append(time.monotonic())
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            self.closed = f"{type(exc).__name__}: {exc}"

    def mark(self) -> float:
        return time.monotonic()

    def max_stall(self, since: float, until: float | None = None) -> float:
        """The longest time without a frame in [since, until]."""
        until = until or time.monotonic()
        times = [since] + [t for t in self.arrivals if since <= t <= until] + [until]
        return max(b - a for a, b in zip(times, times[1:]))

    def stop(self) -> None:
        self._stop = True
        if self.thread is not None:
            self.thread.join(5)


@dataclass
class SecurityWorld:
    base: str
    port: int
    rtsp_port: int
    settings: Settings
    ctx: AppContext
    state: AuthState
    audit: AuditLog
    registry: Registry
    users: UserStore
    supervisor: Supervisor
    data_dir: Path
    cameras: Any
    app: Any = None

    @property
    def ws_base(self) -> str:
        return self.base.replace("http://", "ws://")

    def token(self, name: str) -> str:
        """A signed-in access token (a real sign-in session, as the console gets)."""
        r = httpx.post(f"{self.base}/api/auth/token", json={"username": name, "password": PASSWORD}, timeout=30)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(name)}"}

    def stream_token(self, name: str, camera: str = "cam1", headers: dict[str, str] | None = None) -> str:
        r = httpx.post(f"{self.base}/api/cameras/{camera}/stream-token", headers=headers or self.headers(name),
                       timeout=10)
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    def new_user(self, role: str, regions: list[str] | None = None) -> str:
        name = f"{role[:3]}-{secrets.token_hex(3)}"
        self.users.add(name, PASSWORD, role, regions or ["t1"])
        return name

    def viewer(self, name: str = "viewer", camera: str = "cam1") -> Viewer:
        token = self.stream_token(name, camera)
        return Viewer(f"{self.ws_base}/api/cameras/{camera}/live.mp4?stream=main&token={token}").start()

    def rows_since(self, first_id: int, **filters: Any) -> list[AuditEntry]:
        rows = self.audit.query(newest_first=False, limit=100_000, **filters)
        return [r for r in rows if r.id > first_id]

    def last_audit_id(self) -> int:
        rows = self.audit.query(limit=1)
        return rows[0].id if rows else 0

    def wait_segments(self, camera: str = "cam1", n: int = 2, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        index = self.ctx.index
        while time.monotonic() < deadline:
            if len(index.segments(camera, "main")) >= n:
                return
            time.sleep(0.3)
        raise AssertionError(f"{camera} recorded fewer than {n} segments")

    def wait_online(self, camera: str = "cam1", timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hub = self.supervisor.live.get(camera, "main")
            if hub is not None and hub.online and hub.has_gop:
                return
            time.sleep(0.1)
        raise AssertionError(f"camera {camera} did not come online")


@pytest.fixture(scope="package")
def world(camera_server, tmp_path_factory) -> Iterator[SecurityWorld]:  # type: ignore[no-untyped-def]
    tmp: Path = tmp_path_factory.mktemp("security")
    cams = camera_server({
        "/cam1": Mount("h264", size=(640, 360), label="cam1", gop_seconds=1),
        "/cam2": Mount("h264", size=(320, 180), label="cam2", gop_seconds=1),
    })
    rtsp_port = free_port()
    port = free_port()
    settings = Settings(data_dir=tmp, webrtc_host_addresses=["127.0.0.1"], live_max_viewers=20,
                        rtsp_bind=f"127.0.0.1:{rtsp_port}", http_bind=f"127.0.0.1:{port}", connect_timeout_seconds=2,
                        stall_timeout_seconds=3, segment_target_seconds=2, worker_id="worker-sec",
                        thumbnail_interval_seconds=2, live_max_views_per_user=MAX_VIEWS_PER_USER,
                        whep_connect_timeout_seconds=CONNECT_TIMEOUT_S, import_max_rows=1000,
                        metrics_allow_ips=["127.0.0.2"], rtsp_idle_timeout_seconds=3)
    engine = open_engine(settings.database_url)
    cipher = load_cipher(tmp)
    registry = Registry(engine, cipher)
    registry.add_region(Region(code="county", name="County"))
    registry.add_region(Region(code="t1", name="Town 1", parent="county"))
    registry.add_region(Region(code="t2", name="Town 2", parent="county"))
    registry.add_camera(Camera(id="cam1", name="Gate", region="t1", main_url=cams.url("/cam1")))
    registry.add_camera(Camera(id="cam2", name="Market", region="t2", main_url=cams.url("/cam2")))
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("admin", PASSWORD, "admin", ["*"])
    for role in ("viewer", "investigator", "operator"):
        users.add(role, PASSWORD, role, ["t1"])
    users.add("viewer2", PASSWORD, "viewer", ["t2"])
    audit = AuditLog(engine)
    # Generous sign-in limits: the tests sign in often, from one address.
    state = AuthState(users=users, audit=audit, tokens=TokenSigner(cipher.derive("sharpeyes token signing v1")),
                      limiter=SignInLimiter(per_ip=10_000))
    index = SegmentIndex(engine)
    store = open_object_store(settings)
    ctx = AppContext(settings=settings, index=index, registry=registry, store=store, auth=state)
    pipelines = ctx.media = MediaPipelines(settings, ctx.media_index, clock=now_us)
    supervisor = ctx.supervisor = Supervisor(settings, registry, index, store, attach=pipelines.attach)
    app = create_app(ctx)
    install_restream(app, supervisor.live, settings.rtsp_bind)
    server = UvicornThread(app, port).start()
    supervisor.start()
    world = SecurityWorld(f"http://127.0.0.1:{port}", port, rtsp_port, settings, ctx, state, audit, registry, users,
                          supervisor, tmp, cams, app)
    try:
        world.wait_online("cam1")
        yield world
    finally:
        server.stop()
        supervisor.close()
        engine.dispose()


def raw_http(port: int, request: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send raw bytes to the server and read what it answers (until it closes or goes quiet)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                    length = [int(h.split(b":")[1]) for h in head.split(b"\r\n")
                              if h.lower().startswith(b"content-length")]
                    if length and len(body) >= length[0]:
                        break
        except (TimeoutError, OSError):
            pass
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def json_body(answer: bytes) -> Any:
    return json.loads(answer.partition(b"\r\n\r\n")[2] or b"null")
