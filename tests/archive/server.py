"""A real uvicorn serving an app on a free 127.0.0.1 port, in a thread, for players that
fetch by themselves (ffmpeg's HLS demuxer, Chromium)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

import uvicorn

from tests.support.s3server import free_port


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT``) while the app is served."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)  # polling a start flag, not timing the test
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
