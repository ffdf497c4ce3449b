"""pytest plugin: independent RTSP cameras (gst-rtsp-server subprocesses) for tests.

Registered in ``tests/conftest.py`` (``pytest_plugins = ["tests.support.cameras"]``).

Fixtures
--------
``camera_server`` (session scope) -- a factory::

    server = camera_server({"/cam1": Mount("h264", size=(640, 360), label="cam1"),
                            "/private": Mount("h264", user="admin", password="pw")})
    server.url("/cam1")                       # 'rtsp://127.0.0.1:PORT/cam1'
    server.url("/private", user="admin", password="pw")
    server.client_count("/cam1")              # RTSP sessions set up on that mount now
    server.status()                           # full status dict (sessions/playing/pipelines)
    server.stop(); server.start()             # kill; restart on the same port
    server.pause(); server.resume()           # SIGSTOP / SIGCONT (stalled camera)
    server.clip("/cam1")                      # the tests.support.clips.Clip behind a mount

  Mounts may also be given as plain dicts with the same keys as :class:`Mount`. Servers
  made by the factory are stopped at the end of the session.

``test_cameras`` (session scope) -- a running server with 8 cameras; a
:class:`TestCameras` with ``.server``, ``.urls`` (name -> URL) and ``.mounts``:
``h264_1`` .. ``h264_5`` (H.264, 2 s GOP, burned-in frame code), ``h265``,
``h264_slices`` (4 slices/frame) and ``h264_aac`` (H.264 + AAC). Size from
``SHARPEYES_TEST_CAMERA_SIZE`` (default ``1920x1080``; e.g. ``640x360`` for fast CI).

``garbage_rtsp_server`` (function scope) -- ``(host, port)`` of a TCP listener on
127.0.0.1 that answers every connection with random bytes and closes it;
``garbage_rtsp_server.url`` is an ``rtsp://`` URL for it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.clips import Clip, make_clip

SERVER_SCRIPT = Path(__file__).resolve().parent / "gst_rtsp_server.py"
SYSTEM_PYTHON = os.environ.get("SHARPEYES_GST_PYTHON", "/usr/bin/python3")
HOST = "127.0.0.1"


def camera_size() -> tuple[int, int]:
    w, h = os.environ.get("SHARPEYES_TEST_CAMERA_SIZE", "1920x1080").lower().split("x")
    return int(w), int(h)


@dataclass
class Mount:
    """One camera: a clip kind plus server-side options."""
    kind: str = "h264"                  # see tests.support.clips.KINDS
    size: tuple[int, int] | None = None  # default: camera_size()
    fps: int = 25
    seconds: int = 24
    gop_seconds: int = 2
    label: str = "cam"
    user: str | None = None
    password: str | None = None
    corrupt_ratio: float = 0.0
    seed: int = 1
    pay_options: str = ""               # appended to the RTP payloader, e.g. "timestamp-offset=4294000000"

    def clip(self) -> Clip:
        return make_clip(self.kind, size=tuple(self.size or camera_size()), fps=self.fps,
                         seconds=self.seconds, gop_seconds=self.gop_seconds, label=self.label)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rtsp_answers(port: int, path: str = "/", timeout: float = 1.0) -> bool:
    """True if an RTSP server on ``port`` answers OPTIONS."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(f"OPTIONS rtsp://{HOST}:{port}{path} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
            return s.recv(64).startswith(b"RTSP/1.0")
    except OSError:
        return False


class CameraServer:
    def __init__(self, mounts: dict, workdir: Path, port: int | None = None, *, auth: str = "basic",
                 session_timeout: int = 10):
        self.mounts = {p if p.startswith("/") else "/" + p:
                       (m if isinstance(m, Mount) else Mount(**m)) for p, m in mounts.items()}
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.status_file = self.workdir / "status.json"
        self.log_file = self.workdir / "server.log"
        self._clips = {p: m.clip() for p, m in self.mounts.items()}
        self.proc: subprocess.Popen | None = None
        cfg = {"host": HOST, "port": self.port, "status_file": str(self.status_file),
               "session_timeout": session_timeout, "auth": auth, "mounts": {}}
        for p, m in self.mounts.items():
            c = self._clips[p]
            cfg["mounts"][p] = {"codec": c.codec, "video": str(c.video),
                                "audio": str(c.audio) if c.audio else None, "fps": c.fps,
                                "user": m.user, "password": m.password,
                                "corrupt_ratio": m.corrupt_ratio, "seed": m.seed, "pay_options": m.pay_options}
        self.config_file = self.workdir / "config.json"
        self.config_file.write_text(json.dumps(cfg, indent=1))

    # -- lifecycle
    def start(self, timeout: float = 20.0) -> "CameraServer":
        if self.proc and self.proc.poll() is None:
            return self
        self.status_file.unlink(missing_ok=True)
        log = open(self.log_file, "ab")
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER_SCRIPT), str(self.config_file)],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        path = next(iter(self.mounts), "/")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"camera server exited: {self.log_file.read_text()[-2000:]}")
            if rtsp_answers(self.port, path):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"camera server not ready in {timeout}s: {self.log_file.read_text()[-2000:]}")

    def stop(self) -> None:
        """Kill the server at once (cameras vanish; connections reset)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the cameras stall (TCP stays open, nothing is sent)."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)

    # -- queries
    def url(self, path: str, user: str | None = None, password: str | None = None) -> str:
        path = path if path.startswith("/") else "/" + path
        cred = f"{user}:{password or ''}@" if user else ""
        return f"rtsp://{cred}{HOST}:{self.port}{path}"

    def clip(self, path: str) -> Clip:
        return self._clips[path if path.startswith("/") else "/" + path]

    def status(self) -> dict:
        """Latest status written by the server (refreshed every 0.2 s)."""
        for _ in range(20):
            try:
                return json.loads(self.status_file.read_text())["mounts"]
            except (OSError, ValueError):
                time.sleep(0.05)
        raise RuntimeError("no status from camera server")

    def client_count(self, path: str, fresh: bool = True) -> int:
        """RTSP sessions currently set up on ``path`` (one per pulling client).

        With ``fresh`` it waits for a status written after the call (up to ~1 s)."""
        path = path if path.startswith("/") else "/" + path
        if fresh:
            t = time.time()
            for _ in range(40):
                try:
                    st = json.loads(self.status_file.read_text())
                    if st["time"] > t:
                        return st["mounts"][path]["sessions"]
                except (OSError, ValueError):
                    pass
                time.sleep(0.05)
        return self.status()[path]["sessions"]


@dataclass
class TestCameras:
    server: CameraServer
    urls: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, Mount] = field(default_factory=dict)

    __test__ = False  # not a test class


@pytest.fixture(scope="session")
def camera_server(tmp_path_factory):
    servers: list[CameraServer] = []

    def factory(mounts: dict, port: int | None = None, start: bool = True, **options) -> CameraServer:
        """``options``: ``auth`` ("basic" or "digest") and ``session_timeout`` (seconds) of the server."""
        srv = CameraServer(mounts, tmp_path_factory.mktemp("camera_server"), port=port, **options)
        servers.append(srv)
        return srv.start() if start else srv

    yield factory
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def test_cameras(camera_server) -> TestCameras:
    mounts = {f"h264_{i}": Mount("h264", label=f"h264_{i}") for i in range(1, 6)}
    mounts["h265"] = Mount("h265", label="h265")
    mounts["h264_slices"] = Mount("h264_slices", label="h264_slices")
    mounts["h264_aac"] = Mount("h264_aac", label="h264_aac")
    srv = camera_server({"/" + k: v for k, v in mounts.items()})
    return TestCameras(srv, {k: srv.url(k) for k in mounts}, mounts)


class GarbageServer(tuple):
    url: str


@pytest.fixture
def garbage_rtsp_server():
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(16)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        rnd = random.Random(0)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(0.5)
                    conn.sendall(rnd.randbytes(4096))
                    try:
                        conn.recv(4096)
                    except OSError:
                        pass
                    conn.sendall(rnd.randbytes(4096))
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    port = sock.getsockname()[1]
    g = GarbageServer((HOST, port))
    g.url = f"rtsp://{HOST}:{port}/stream"
    yield g
    stop.set()
    t.join(2)
    sock.close()
