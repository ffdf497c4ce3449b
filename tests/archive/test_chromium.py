"""Chromium plays clip.mp4 to the end: a real headless browser, a real HTTP server."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from tests.archive.conftest import Archive
from tests.archive.recorded import T0
from tests.archive.server import serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGE = """<!doctype html><html><body>
<video id="v" muted autoplay playsinline></video>
<script>
const v = document.getElementById('v');
function report(event) {
  const q = new URLSearchParams({event, t: v.currentTime, d: v.duration, w: v.videoWidth,
                                 err: v.error ? v.error.code + ' ' + v.error.message : ''});
  fetch('/test/report?' + q);
}
v.addEventListener('loadedmetadata', () => report('loadedmetadata'));
v.addEventListener('ended', () => report('ended'));
v.addEventListener('error', () => report('error'));
v.src = SRC;
v.play().catch(e => fetch('/test/report?event=play-failed&err=' + encodeURIComponent(e)));
</script></body></html>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_chromium_plays_the_clip_to_ended(archive: Archive, tmp_path: Path) -> None:
    start, end = T0 + 3_500_000, T0 + 6_000_000  # mid-GOP start, across a segment boundary
    token = archive.client.post("/api/cameras/cam-1/stream-token", headers=archive.headers()).json()["token"]
    src = f"/api/cameras/cam-1/clip.mp4?start={start // 1000}&end={end // 1000}&token={token}"
    events: queue.Queue[dict[str, str]] = queue.Queue()
    outer = FastAPI()

    @outer.get("/test/page.html")
    def page() -> HTMLResponse:
        return HTMLResponse(PAGE.replace("SRC", json.dumps(src)))

    @outer.get("/test/report")
    def report(request: Request) -> dict[str, str]:
        events.put(dict(request.query_params))
        return {}

    outer.mount("/", archive.client.app)
    with serve(outer) as base:
        browser = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--autoplay-policy=no-user-gesture-required",
             f"--user-data-dir={tmp_path / 'profile'}", f"{base}/test/page.html"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen: list[dict[str, str]] = []
        try:
            while not seen or seen[-1]["event"] not in ("ended", "error", "play-failed"):
                seen.append(events.get(timeout=60))
        finally:
            browser.terminate()
            try:
                browser.wait(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
    assert seen[-1]["event"] == "ended", seen
    meta = next(e for e in seen if e["event"] == "loadedmetadata")
    assert meta["w"] == "640"
    assert float(seen[-1]["t"]) == pytest.approx((end - start) / 1e6, abs=0.05), seen
