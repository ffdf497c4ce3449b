"""A GB/T 28181 channel plays over WebRTC (WHEP) in headless Chromium, like an RTSP camera.

SIPp answers our INVITE as the device; GStreamer's mpegpsmux sends H.264 PS over RTP (UDP,
test-only framer); the real supervisor records the channel and its live hub feeds the app's
WHEP route; Chromium decodes frames (getStats inbound-rtp).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from argon2 import PasswordHasher

from ingest.gb28181.sip import Peer
from streams.access.audit import AuditLog
from streams.access.guard import AuthState
from streams.access.tokens import TokenSigner
from streams.access.users import UserStore
from streams.app import create_app
from streams.context import AppContext
from tests.gb28181.test_gb_live import CHANNEL, DEVICE, _media
from tests.live.chromium import Chromium, open_page
from tests.live.test_browser import WHEP_JS, WHEP_STATS_JS, first_stats
from tests.support.cameras import free_port
from tests.support.gb_device import SippDevice
from tests.support.gb_media import GbRecorder
from tests.support.http import UvicornThread
from tests.support.sipp import needs_sipp

pytestmark = needs_sipp


def test_gb_channel_plays_over_webrtc_in_chromium(tmp_path: Path) -> None:
    clip, media, kind = _media("h264", 24, tmp_path)
    device = SippDevice(tmp_path, ps_kind=kind, media=media).start()
    rec = GbRecorder.start(tmp_path, {CHANNEL: (DEVICE, Peer("UDP", "127.0.0.1", device.port))},
                           webrtc_host_addresses=["127.0.0.1"], segment_target_seconds=10)
    svc = rec.services
    users = UserStore(svc.engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("viewer", "correct horse battery", "viewer", ["*"])
    state = AuthState(users=users, audit=AuditLog(svc.engine),
                      tokens=TokenSigner(svc.cipher.derive("sharpeyes token signing v1")))
    ctx = AppContext(settings=svc.settings, index=svc.index, registry=svc.registry, store=svc.store,
                     supervisor=rec.supervisor, auth=state)
    server = UvicornThread(create_app(ctx), free_port()).start()
    browser = Chromium()
    try:
        rec.wait_for(lambda: (hub := rec.supervisor.live.get(CHANNEL, "main")) is not None and hub.online
                     and hub.has_gop, 30, "the channel live")

        async def play() -> dict:
            page, ws = await open_page(browser)
            try:
                await page.goto(f"http://127.0.0.1:{server.port}/api/ping")
                auth = f"Bearer {state.tokens.issue('access', 'viewer')[0]}"
                started = await page.eval(WHEP_JS % {"url": json.dumps(f"/api/cameras/{CHANNEL}/whep?stream=main"),
                                                     "auth": json.dumps(auth)})
                assert started == "ok", started
                return await first_stats(page, WHEP_STATS_JS)
            finally:
                await ws.close()

        stats = asyncio.run(play())
        assert stats["codec"] == "video/H264" and stats["framesDecoded"] > 0
    finally:
        browser.close()
        server.stop()
        rec.close()
        device.stop()
