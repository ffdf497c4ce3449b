"""pytest plugin: a real S3 endpoint for tests, moto's server in its own process.

Fixtures:
- ``s3_server`` (session): a running ``MotoS3Server`` with ``.endpoint``
  (``host:port``), ``.access_key``, ``.secret_key``, ``.stop()`` and ``.start()``.
- ``s3_bucket`` (function): the name of a new, empty bucket on that server.

moto keeps everything in memory: ``stop()`` then ``start()`` brings the server
back on the same port but *empty* (no buckets, no objects). Tests that restart
the server must create their bucket again, and must not share the session
server's state with tests that run after them (use ``s3_bucket`` for fresh state).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _moto_server_executable() -> str:
    # The console script sits next to the interpreter running the tests, so the
    # venv's moto is used even when the venv is not activated.
    path = Path(sys.executable).parent / "moto_server"
    if not path.exists():
        raise RuntimeError(f"{path} not found: install the test extras (pip install -e '.[test]')")
    return str(path)


class MotoS3Server:
    """moto's S3 server as a subprocess on ``127.0.0.1:port``."""

    access_key = "testing-access-key"
    secret_key = "testing-secret-key"
    region = "us-east-1"

    def __init__(self, port: int | None = None, log_path: Path | None = None):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """``host:port`` as the minio client (and ``SHARPEYES_S3_ENDPOINT``) wants it."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart, on the same port) and wait until it answers HTTP."""
        if self.running:
            return
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(
                [_moto_server_executable(), "-H", self.host, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # the child holds its own descriptor
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._proc.returncode} (port {self.port} taken?)")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer means it is serving
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.endpoint} within {timeout} s")

    def stop(self) -> None:
        """Terminate the server; its in-memory buckets and objects are lost."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def new_bucket_name(self) -> str:
        return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3Server]:
    """A moto S3 server for the whole session (log in the session's tmp dir)."""
    server = MotoS3Server(log_path=tmp_path_factory.mktemp("moto") / "moto_server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: MotoS3Server) -> str:
    """A fresh bucket name on ``s3_server``, created empty (and started if a test stopped it)."""
    from minio import Minio

    s3_server.start()
    name = s3_server.new_bucket_name()
    client = Minio(
        s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
        region=s3_server.region,
    )
    client.make_bucket(name)
    return name
