"""Real processes for the fault suite: ``sharpeyes ingest`` as a subprocess that can be
killed, and loss counted from the index, the objects and the decoded frame codes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av

from config.settings import Settings
from sharpeyes.services import Services
from tests.support.cameras import free_port
from tests.support.clips import read_frame_code

ROOT = Path(__file__).resolve().parents[2]
FPS = 25
LOOP_FRAMES = 24 * FPS  # the clips loop every 24 s


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> float:
    """Poll ``cond`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


class IngestProcess:
    """``python -m sharpeyes.cli ingest`` with its settings in ``SHARPEYES_*`` env."""

    def __init__(self, data_dir: Path, **settings: object):
        self.data_dir = data_dir
        self.http = f"127.0.0.1:{free_port()}"
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), SHARPEYES_DATA_DIR=str(data_dir),
                        SHARPEYES_HTTP_BIND=self.http, SHARPEYES_RTSP_BIND=f"127.0.0.1:{free_port()}",
                        SHARPEYES_SEGMENT_TARGET_SECONDS="2", SHARPEYES_WORKER_ID="fault-w1",
                        SHARPEYES_METRICS_ALLOW_IPS='["127.0.0.1"]')
        self.env.pop("SHARPEYES_CONFIG", None)
        for k, v in settings.items():
            self.env[f"SHARPEYES_{k.upper()}"] = str(v)
        self.log = data_dir / "ingest.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.svc = Services(Settings(**{k: v for k, v in _settings_from_env(self.env).items()}))

    def start(self) -> "IngestProcess":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "sharpeyes.cli", "ingest"], env=self.env,
                                         stdout=log, stderr=log, cwd=ROOT)
        wait_for(self._answers, 60, f"sharpeyes ingest on {self.http} (log {self.log})")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"sharpeyes exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{self.http}/api/ping", timeout=1):
                return True
        except OSError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> float:
        """SIGTERM; returns how long the process took to exit."""
        assert self.proc is not None
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - t

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.http}/metrics", timeout=5) as r:
            return r.read().decode()

    def camera_up(self, camera_id: str) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        for fam in text_string_to_metric_families(self.metrics()):
            for s in fam.samples:
                if s.name == "sharpeyes_camera_up" and s.labels.get("camera") == camera_id:
                    return s.value
        return None


def _settings_from_env(env: dict[str, str]) -> dict[str, object]:
    """The process's settings as ``Settings`` keyword arguments: list values are JSON in the
    environment (as pydantic-settings reads them there) but must be lists as arguments."""
    return {k.removeprefix("SHARPEYES_").lower(): json.loads(v) if v.startswith("[") else v for k, v in env.items()
            if k.startswith("SHARPEYES_") and k not in ("SHARPEYES_GST_PYTHON", "SHARPEYES_TEST_CAMERA_SIZE",
                                                        "SHARPEYES_SECRET_KEY", "SHARPEYES_ADMIN_PASSWORD")}


@dataclass
class Edge:
    """A recorded segment's first or last frame code."""

    first: int
    last: int


def frame_codes(svc: Services, object_key: str) -> Edge:
    """Frame codes of the first and last decodable frames of a stored segment."""
    info = svc.store.stat(object_key)
    data = svc.store.get_range(object_key, 0, info.size)
    codes = []
    with av.open(io.BytesIO(data)) as c:
        for frame in c.decode(video=0):
            try:
                codes.append(read_frame_code(frame.to_ndarray(format="gray")))
            except ValueError:
                continue
    assert codes, f"{object_key}: no frame with a readable frame code"
    return Edge(codes[0], codes[-1])


def frames_missing(before: Edge, after: Edge) -> int:
    """Frames the camera sent between two segments that no segment holds (mod the loop)."""
    return (after.first - before.last - 1) % LOOP_FRAMES


def check_rows_and_objects(svc: Services) -> None:
    """Every index row has its object (same size) and every segment object has its row."""
    rows = {r.object_key: r for r in svc.index.all_segments()}
    objects = {o.key: o for o in svc.store.list("") if o.key.endswith(".mp4")}
    assert set(rows) == set(objects), (f"rows without objects: {sorted(set(rows) - set(objects))[:5]}; "
                                       f"objects without rows: {sorted(set(objects) - set(rows))[:5]}")
    for key, row in rows.items():
        assert objects[key].size == row.bytes, key


class Witness:
    """A second RTSP client on a mount while the worker is killed. The camera fixture
    shares one pipeline per mount among its clients and restarts the clip (frame code 0)
    when the last one leaves: the witness keeps the pipeline, so frame codes on both
    sides of a gap come from one continuous camera clock."""

    def __init__(self, url: str):
        import threading

        self.url = url
        self.packets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Witness":
        self._thread.start()
        wait_for(lambda: self.packets > 0, 20, f"the witness client on {self.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with av.open(self.url, options={"rtsp_transport": "tcp"}, timeout=10) as c:
            for _ in c.demux(video=0):
                self.packets += 1
                if self._stop.is_set():
                    return
