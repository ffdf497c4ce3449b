"""A hostile client on loopback, bounded in time and requests, while a real viewer watches.

Each attack runs against the real server while an MSE viewer (a real WebSocket client)
receives cam1 live. After each one the viewer must still be connected, frames must still come,
and the API must still answer. The bounds: at most a few hundred connections or requests, a
few seconds.

The longest gap between live frames is recorded (``record_property("stall_ms")``) but only
bounded loosely here, at ``FROZEN_S``: past that the server stopped serving video during the
attack, which is a failure on any machine. How short the gap is depends on the machine's load,
so that figure is measured by ``tests/bench/hostile.py`` against a quiet window of the same
run (the ``quiet`` case below), not asserted.
"""

from __future__ import annotations

import asyncio
import random
import socket
import string
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import httpx
import pytest
from aiortc import RTCPeerConnection

from tests.security.conftest import MAX_VIEWS_PER_USER, SecurityWorld

# A gap this long means the server froze; under a load average of 25-48 an attack's real gap
# was seen over 1 s (a CI machine is shared), never near this.
FROZEN_S = 5.0


def quiet(world: SecurityWorld) -> None:
    """No attack: the baseline gap between frames for the benchmark (3 s, as long as most attacks)."""
    time.sleep(3)


def body_bombs(world: SecurityWorld) -> None:
    """20 anonymous clients stream 4 MiB chunked bodies; 20 declare 300 MB."""
    def one(declared: bool) -> None:
        try:
            with socket.create_connection(("127.0.0.1", world.port), timeout=5) as s:
                if declared:
                    s.sendall(b"POST /api/cameras HTTP/1.1\r\nHost: x\r\nContent-Length: 314572800\r\n\r\n{")
                else:
                    s.sendall(b"POST /api/cameras/import HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for _ in range(4):
                        s.sendall(b"100000\r\n" + b"x" * 0x100000 + b"\r\n")
                s.recv(4096)
        except OSError:
            pass  # refused mid-body: what we want

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(one, [True, False] * 20))


def slow_headers_http(world: SecurityWorld) -> None:
    """200 connections, each sending a request head one byte at a time for 5 s."""
    socks = [socket.create_connection(("127.0.0.1", world.port), timeout=5) for _ in range(200)]
    head = b"GET /api/ping HTTP/1.1\r\nHost: x\r\nX-Slow: "
    deadline = time.monotonic() + 5
    i = 0
    while time.monotonic() < deadline:
        for s in socks:
            try:
                s.send(head[i % len(head):i % len(head) + 1])
            except OSError:
                pass
        i += 1
        time.sleep(0.2)
    for s in socks:
        s.close()


def slow_headers_rtsp(world: SecurityWorld) -> None:
    """30 RTSP connections dribbling a request head for 5 s (the per-client cap refuses some)."""
    socks = []
    for _ in range(30):
        try:
            socks.append(socket.create_connection(("127.0.0.1", world.rtsp_port), timeout=5))
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for s in socks:
            try:
                s.send(b"D")
            except OSError:
                pass
        time.sleep(0.2)
    for s in socks:
        s.close()


def dead_whep_offers(world: SecurityWorld) -> None:
    """One user posts more offers than allowed and never connects any."""
    headers = world.headers(world.new_user("viewer"))

    async def main() -> None:
        pcs = []
        async with httpx.AsyncClient(timeout=20) as client:
            for _ in range(MAX_VIEWS_PER_USER + 3):
                pc = RTCPeerConnection()
                pc.addTransceiver("video", direction="recvonly")
                await pc.setLocalDescription(await pc.createOffer())
                await client.post(f"{world.base}/api/cameras/cam1/whep", content=pc.localDescription.sdp,
                                  headers={**headers, "Content-Type": "application/sdp"})
                pcs.append(pc)
        for pc in pcs:
            await pc.close()

    asyncio.run(main())


def import_bomb(world: SecurityWorld) -> None:
    """An alias bomb, a 1,000-row file of bad rows, and a file over the row cap, as an operator."""
    op = world.headers("operator")
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{','.join('*' + p for p in [prev] * 9)}]\n" for prev, c in zip("abcdefgh", "bcdefghi"))
    rows = "id,name,region,main_url\n" + "".join(f"b-{i},B,nowhere,rtsp://10.3.0.1/{i}\n" for i in range(1000))
    over = "id,name,region,main_url\n" + "".join(f"o-{i},O,t1,rtsp://10.4.0.1/{i}\n" for i in range(5000))
    for fmt, body in (("yaml", bomb + "cameras: *i\n"), ("csv", rows), ("csv", over)):
        r = httpx.post(f"{world.base}/api/cameras/import?format={fmt}", content=body, headers=op, timeout=60)
        assert r.status_code == 422 and len(r.content) < 200_000, (fmt, r.status_code, len(r.content))


def token_fuzz(world: SecurityWorld) -> None:
    """400 requests with garbage, forged, huge and non-ASCII credentials, on many routes."""
    rng = random.Random(13)
    good = world.token("viewer")
    body, _, sig = good.partition(".")
    forms = [lambda: "".join(rng.choice(string.printable[:94]) for _ in range(rng.randint(1, 300))),
             lambda: body[:-2] + "AA." + sig, lambda: body + "." + sig[::-1], lambda: "x" * 5000,
             lambda: "é" * rng.randint(1, 50), lambda: good + ".extra", lambda: "sek_" + "A" * 43]
    paths = ["/api/me", "/api/cameras", "/api/cameras/cam1/live.m3u8", "/api/cameras/cam1/clip.mp4?start=1&end=2",
             "/api/health", "/metrics", "/api/audit"]
    codes: list[int] = []
    with httpx.Client(base_url=world.base, timeout=10) as client:
        for n in range(400):
            token = forms[n % len(forms)]()
            path = paths[n % len(paths)]
            try:
                if n % 3 == 0:
                    r = client.get(path + ("&" if "?" in path else "?") + "token=" + httpx.QueryParams({"t": token})
                                   .get("t", ""))
                else:
                    r = client.get(path, headers={"Authorization": f"Bearer {token}".encode("utf-8")})
            except (httpx.HTTPError, UnicodeError):
                continue
            codes.append(r.status_code)
    assert codes and all(400 <= c < 500 for c in codes), sorted(set(codes))


ATTACKS: dict[str, Callable[[SecurityWorld], None]] = {
    "quiet": quiet, "body_bombs": body_bombs, "slow_headers_http": slow_headers_http,
    "slow_headers_rtsp": slow_headers_rtsp, "dead_whep_offers": dead_whep_offers, "import_bomb": import_bomb,
    "token_fuzz": token_fuzz,
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_hostile_client_leaves_live_video_flowing(world: SecurityWorld, attack: str,
                                                   record_property: Callable[[str, object], None]) -> None:
    world.wait_online("cam1")
    viewer = world.viewer("viewer")
    try:
        since = viewer.mark()
        started = time.monotonic()
        ATTACKS[attack](world)
        took = time.monotonic() - started
        after = len(viewer.arrivals)
        deadline = time.monotonic() + 10
        while len(viewer.arrivals) < after + 25 and time.monotonic() < deadline and viewer.closed is None:
            time.sleep(0.05)  # a second of frames after the attack: video still flows
        stall = viewer.max_stall(since)
        record_property("stall_ms", round(stall * 1000))
        record_property("attack_s", round(took, 2))
        print(f"\n{attack}: {took:.1f} s, longest gap between live frames {stall * 1000:.0f} ms")
        assert viewer.closed is None, viewer.closed
        assert len(viewer.arrivals) >= after + 25, f"{attack}: live video stopped after the attack"
        assert httpx.get(f"{world.base}/api/ping", timeout=5).status_code == 200
        assert stall < FROZEN_S, f"{attack}: the viewer got no frame for {stall:.2f} s (the server froze)"
    finally:
        viewer.stop()
