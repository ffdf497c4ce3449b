"""A small cluster for scale tests: ``sharpeyes ingest`` worker subprocesses over one
PostgreSQL index and one moto S3 bucket, and what the index says they recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet

from config.cameras import Camera, Region
from storage import LeaseTable, Registry, SegmentIndex, SecretCipher, open_engine
from tests.support.s3server import free_port

REPO = Path(__file__).resolve().parents[2]
S = 1_000_000


@dataclass
class Worker:
    worker_id: str
    data_dir: Path
    env: dict[str, str]
    http_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "worker.log"

    def start(self) -> "Worker":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sharpeyes.cli", "ingest", "--worker-id", self.worker_id,
                 "--http-bind", f"127.0.0.1:{self.http_port}"],
                env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until its HTTP port answers: from then on SIGTERM is a clean stop (before, the
        process has not installed its signal handlers yet)."""
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"worker {self.worker_id} never listened on {self.http_port}\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no release, no upload of the open segments."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait(10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: open segments are closed and indexed, leases released."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    database_url: str
    root: Path
    env: dict[str, str]
    engine: object = None
    cipher: SecretCipher | None = None
    workers: dict[str, Worker] = field(default_factory=dict)

    @classmethod
    def create(cls, database_url: str, root: Path, s3_server, bucket: str, *, ttl: float = 4.0,  # type: ignore[no-untyped-def]
               segment_seconds: float = 4.0, shared_spool: bool = False) -> "Cluster":
        key = Fernet.generate_key().decode()
        env = dict(
            os.environ,
            PYTHONPATH=str(REPO),
            SHARPEYES_DATABASE_URL=database_url,
            SHARPEYES_S3_ENDPOINT=s3_server.endpoint,
            SHARPEYES_S3_ACCESS_KEY=s3_server.access_key,
            SHARPEYES_S3_SECRET_KEY=s3_server.secret_key,
            SHARPEYES_S3_BUCKET=bucket,
            SHARPEYES_S3_REGION=s3_server.region,
            SHARPEYES_SECRET_KEY=key,
            SHARPEYES_LEASE_TTL_SECONDS=str(ttl),
            SHARPEYES_SEGMENT_TARGET_SECONDS=str(segment_seconds),
            SHARPEYES_SHUTDOWN_TIMEOUT_SECONDS="10",
            SHARPEYES_CONNECT_TIMEOUT_SECONDS="5",
            SHARPEYES_STALL_TIMEOUT_SECONDS="5",
        )
        if shared_spool:  # one volume all workers mount: here, one directory
            env["SHARPEYES_SPOOL_SHARED_DIR"] = str(root / "shared-spool")
        cluster = cls(database_url, root, env)
        cluster.engine = open_engine(database_url)
        cluster.cipher = SecretCipher(key)
        return cluster

    @property
    def registry(self) -> Registry:
        return Registry(self.engine, self.cipher)  # type: ignore[arg-type]

    @property
    def index(self) -> SegmentIndex:
        return SegmentIndex(self.engine)  # type: ignore[arg-type]

    @property
    def leases(self) -> LeaseTable:
        return LeaseTable(self.engine)  # type: ignore[arg-type]

    def add_cameras(self, urls: dict[str, str], sub_urls: dict[str, str] | None = None) -> list[str]:
        """Register cameras by id: main stream URLs, and sub-stream URLs for some of them."""
        reg = self.registry
        reg.add_region(Region(code="county", name="County"))
        subs = sub_urls or {}
        reg.add_cameras([Camera(id=cid, name=cid, region="county", main_url=url, sub_url=subs.get(cid))
                         for cid, url in urls.items()])
        return list(urls)

    def spool_of(self, worker_id: str) -> Path:
        shared = self.env.get("SHARPEYES_SPOOL_SHARED_DIR")
        return Path(shared) / worker_id if shared else self.root / worker_id / "spool"

    def worker(self, worker_id: str) -> Worker:
        if worker_id in self.workers:  # a restart: same data directory, port and id
            return self.workers[worker_id].start()
        port = free_port()
        env = dict(self.env, SHARPEYES_DATA_DIR=str(self.root / worker_id),
                   SHARPEYES_ADVERTISE_URL=f"http://127.0.0.1:{port}")
        w = Worker(worker_id, self.root / worker_id, env, port)
        self.workers[worker_id] = w
        return w.start()

    def owners(self) -> dict[str, str]:
        """camera -> worker for every lease held now."""
        now = time.time_ns() // 1000
        return {lease.camera_id: lease.worker_id for lease in self.leases.leases() if lease.held_at(now)}

    def wait_for(self, what: str, predicate, timeout: float = 60.0, poll: float = 0.25):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        logs = "\n".join(f"--- {w.worker_id}\n{w.log()[-3000:]}" for w in self.workers.values())
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def close(self) -> None:
        for w in self.workers.values():
            try:
                w.stop()
            except Exception:  # noqa: BLE001
                pass
        self.engine.dispose()  # type: ignore[attr-defined]


def merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def covered(spans: list[tuple[int, int]], start: int, end: int) -> int:
    return sum(max(0, min(b, end) - max(a, start)) for a, b in merged(spans))
