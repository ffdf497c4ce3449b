"""Headless Debian Chromium driven over the DevTools protocol (a WebSocket), for live-view tests.

The flags are the issue's, plus ``--disable-features=WebRtcHideLocalIpsWithMdns`` so
Chromium's ICE candidates are plain 127.0.0.1 rather than mDNS names (aioice would learn
them as peer-reflexive anyway; plain addresses make the connection one round trip faster).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
         "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
         "--remote-debugging-address=127.0.0.1"]


class Chromium:
    """One headless browser process; ``page()`` gives a DevTools session on its first tab."""

    def __init__(self) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="sharpeyes-chromium-"))
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        self.port = int(port_file.read_text().split()[0])

    def page_ws(self) -> str:
        pages = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=10).json()
        return next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """A DevTools session: ``await page.eval(js)`` returns the (awaited) value."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        await self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]  # type: ignore[no-any-return]

    async def eval(self, js: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=js, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.enable")
        await self.call("Page.navigate", url=url)
        for _ in range(100):
            if await self.eval("document.readyState") == "complete":
                return
            await asyncio.sleep(0.1)


async def open_page(browser: Chromium) -> tuple[Page, Any]:
    ws = await websockets.connect(browser.page_ws(), max_size=None)
    return Page(ws), ws
