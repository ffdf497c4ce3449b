"""Audit completeness: a scripted session as one investigator and one operator.

Every action yields exactly one audit row with user, camera, action and client address,
and nothing else writes one. Watching WebRTC and MSE also writes the matching
``live_stop`` when the viewer leaves (the end of the same viewing; LL-HLS has none: a
viewer leaves by not asking again). The CLI's changes are recorded as the OS user.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import websockets

from tests.live.whep_client import close, wait_frames, whep_connect
from tests.security.conftest import PASSWORD, SecurityWorld

ROOT = Path(__file__).resolve().parents[2]


def _cli(world: SecurityWorld, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), SHARPEYES_DATA_DIR=str(world.data_dir))
    env.pop("SHARPEYES_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "sharpeyes.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_action_writes_exactly_one_row(world: SecurityWorld) -> None:
    inv_name, op_name = world.new_user("investigator"), world.new_user("operator")
    world.wait_segments("cam1", 3)
    segs = world.ctx.index.segments("cam1", "main")
    start_ms, end_ms = segs[0].start_us // 1000 + 1, segs[-1].end_us // 1000 - 1
    first = world.last_audit_id()
    b = world.base
    expected: list[tuple[str, str, str | None]] = []  # (user, action, camera)

    def sign_in(name: str) -> dict[str, str]:
        r = httpx.post(f"{b}/api/auth/token", json={"username": name, "password": PASSWORD}, timeout=30)
        assert r.status_code == 200
        expected.append((name, "sign_in", None))
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    inv, op = sign_in(inv_name), sign_in(op_name)

    # Watch WebRTC, MSE and LL-HLS.
    async def webrtc() -> None:
        async with httpx.AsyncClient(timeout=20) as client:
            rx = await whep_connect(client, f"{b}/api/cameras/cam1/whep", inv)
            assert not isinstance(rx, httpx.Response), rx.text
            await wait_frames(rx, 5)
            assert (await client.delete(b + rx.location, headers=inv)).status_code == 200
            await close(rx)

    asyncio.run(webrtc())
    expected += [(inv_name, "live_start", "cam1"), (inv_name, "live_stop", "cam1")]
    token = httpx.post(f"{b}/api/cameras/cam1/stream-token", headers=inv, timeout=10).json()["token"]

    async def mse() -> None:
        async with websockets.connect(f"{world.ws_base}/api/cameras/cam1/live.mp4?token={token}") as ws:
            for _ in range(10):
                await asyncio.wait_for(ws.recv(), 10)

    asyncio.run(mse())
    time.sleep(0.5)  # the server notices the close
    expected += [(inv_name, "live_start", "cam1"), (inv_name, "live_stop", "cam1")]
    for _ in range(3):
        assert httpx.get(f"{b}/api/cameras/cam1/live.m3u8?token={token}", timeout=30).status_code == 200
    expected.append((inv_name, "live_start", "cam1"))

    # latest.jpg and a thumbnail (polled and scrubbed: one row each).
    for _ in range(3):
        assert httpx.get(f"{b}/api/cameras/cam1/latest.jpg", headers=inv, timeout=10).status_code == 200
    expected.append((inv_name, "snapshot", "cam1"))
    thumbs = httpx.get(f"{b}/api/cameras/cam1/thumbnails?start={start_ms - 60_000}&end={end_ms + 60_000}",
                       headers=inv, timeout=10).json()
    assert thumbs
    for t in thumbs[:3]:
        httpx.get(b + t["url"], headers=inv, timeout=10)
    expected.append((inv_name, "snapshot", "cam1"))

    # Play back with Range requests.
    clip = f"{b}/api/cameras/cam1/clip.mp4?start={start_ms}&end={end_ms}"
    for rng in ("bytes=0-999", "bytes=1000-", "bytes=500-600"):
        assert httpx.get(clip, headers={**inv, "Range": rng}, timeout=60).status_code == 206
    expected.append((inv_name, "playback", "cam1"))

    # Export and download.
    job = httpx.post(f"{b}/api/exports", json={"camera": "cam1", "start": start_ms, "end": end_ms,
                                               "reason": "case 42"}, headers=inv, timeout=30).json()
    expected.append((inv_name, "export", "cam1"))
    deadline = time.monotonic() + 60
    while httpx.get(f"{b}/api/exports/{job['id']}", headers=inv, timeout=10).json()["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert httpx.get(f"{b}/api/exports/{job['id']}/clip.mp4", headers=inv, timeout=60).status_code == 200
    expected.append((inv_name, "export", "cam1"))

    # Create and release a hold.
    hold = httpx.post(f"{b}/api/cameras/cam1/holds", json={"start": start_ms, "end": end_ms, "reason": "case 42"},
                      headers=inv, timeout=10).json()
    assert httpx.delete(f"{b}/api/cameras/cam1/holds/{hold['id']}", headers=inv, timeout=10).status_code == 200
    expected += [(inv_name, "hold", "cam1"), (inv_name, "hold_release", "cam1")]

    # Add, edit and remove a camera over the API and over the CLI.
    cam = {"id": "audit-cam", "name": "Audit", "region": "t1", "main_url": "rtsp://10.9.9.9/main", "enabled": False}
    assert httpx.post(f"{b}/api/cameras", json=cam, headers=op, timeout=10).status_code == 201
    r = httpx.patch(f"{b}/api/cameras/audit-cam", json={"name": "Audit 2"}, headers=op, timeout=10)
    assert r.status_code == 200
    assert httpx.delete(f"{b}/api/cameras/audit-cam", headers=op, timeout=10).status_code == 204
    expected += [(op_name, a, "audit-cam") for a in ("camera_add", "camera_edit", "camera_remove")]
    _cli(world, "camera", "add", "cli-cam", "--name", "CLI", "--region", "t1", "--url", "rtsp://10.9.9.8/main",
         "--disabled")
    _cli(world, "camera", "edit", "cli-cam", "--name", "CLI 2")
    _cli(world, "camera", "remove", "cli-cam")
    os_user = f"cli:{getpass.getuser()}"
    expected += [(os_user, a, "cli-cam") for a in ("camera_add", "camera_edit", "camera_remove")]

    # Probe (refused: loopback), then sign out.
    r = httpx.post(f"{b}/api/probe", json={"url": "rtsp://127.0.0.1:554/x", "timeout": 1}, headers=op, timeout=30)
    assert r.status_code == 403
    expected.append((op_name, "probe", None))
    for name, headers in ((inv_name, inv), (op_name, op)):
        assert httpx.post(f"{b}/api/auth/signout", headers=headers, timeout=10).status_code == 200
        expected.append((name, "sign_out", None))

    rows = world.rows_since(first)
    got = [(r.user, r.action, r.camera_id) for r in rows]
    assert sorted(got, key=str) == sorted(expected, key=str), "\n".join(map(str, got))
    for r in rows:
        assert r.client_ip == ("local" if r.user.startswith("cli:") else "127.0.0.1"), r
        assert r.role != "-" and r.time_us > 0
