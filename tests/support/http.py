"""The app served by a real uvicorn on 127.0.0.1 in a thread, configured as ``sharpeyes`` serves it."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from config.settings import Settings
from sharpeyes.process import http_config


class UvicornThread:
    """``UvicornThread(app, port).start()`` ... ``.stop()``; the lifespan runs (live hubs bind their loop).

    The uvicorn settings are ``sharpeyes.process.http_config``'s (no permessage-deflate,
    proxy headers, HTTPS when ``settings`` has a certificate)."""

    def __init__(self, app: Any, port: int, settings: Settings | None = None) -> None:
        self.port = port
        config = http_config(app, settings or Settings(), f"127.0.0.1:{port}")
        config.log_level = "warning"
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def start(self) -> "UvicornThread":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
