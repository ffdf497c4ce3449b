"""Findings 1, 5, 10, 15, 16, 17: what a hostile request body, URL, header or file can do."""

from __future__ import annotations

import resource
import socket
import time

import httpx
import pytest

from tests.security.conftest import SecurityWorld, raw_http, status_of


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- finding 1: bodies are capped and their senders authenticated before they are read ----


def test_f01_a_huge_declared_body_is_refused_before_it_is_sent(world: SecurityWorld) -> None:
    head = (b"POST /api/cameras HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 314572800\r\n\r\n")
    started = time.monotonic()
    answer = raw_http(world.port, head + b"{", read_timeout=5)
    assert status_of(answer) == 413, answer[:200]
    assert time.monotonic() - started < 4


def test_f01_an_anonymous_streamed_body_gets_401_unread(world: SecurityWorld) -> None:
    before = _rss_mb()
    sock = socket.create_connection(("127.0.0.1", world.port), timeout=10)
    sock.sendall(b"POST /api/cameras HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"a" * (1 << 20)
    sent = 0
    answer = b""
    try:
        for _ in range(100):  # up to 100 MiB, unless the server answers first
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += 1
            sock.setblocking(False)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            sock.setblocking(True)
            if answer:
                break
    except OSError:
        pass  # the server closed on us: it did not want the body
    sock.settimeout(5)
    try:
        answer += sock.recv(65536)
    except OSError:
        pass
    sock.close()
    assert status_of(answer) == 401, answer[:300]
    assert sent < 100
    assert _rss_mb() - before < 50


def test_f01_a_signed_in_caller_is_capped_too(world: SecurityWorld) -> None:
    big = {"id": "x", "name": "n" * (1 << 20), "region": "t1", "main_url": "rtsp://10.1.1.1/x"}
    r = httpx.post(f"{world.base}/api/cameras", json=big, headers=world.headers("operator"), timeout=30)
    assert r.status_code == 413
    r = httpx.post(f"{world.base}/api/auth/token", content=b'{"username": "' + b"a" * 100_000 + b'"}',
                   headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413  # sign-in is public: its cap is small


# -- finding 5: camera passwords with reserved characters ---------------------------------


def test_f05_reserved_characters_in_a_camera_password(world: SecurityWorld) -> None:
    op = world.headers("operator")
    for bad, code in (("pa/ss", "%2F"), ("pa#ss", "%23"), ("pa?ss", "%3F")):
        body = {"id": "cam-pw", "name": "pw", "region": "t1", "main_url": f"rtsp://admin:{bad}@10.0.0.9:554/main"}
        r = httpx.post(f"{world.base}/api/cameras", json=body, headers=op, timeout=10)
        assert r.status_code == 422 and code in r.text and bad not in r.text, r.text
    secret = "S3cret@tail@end"
    body = {"id": "cam-at", "name": "at", "region": "t1", "main_url": f"rtsp://admin:{secret}@10.0.0.9:554/main"}
    r = httpx.post(f"{world.base}/api/cameras", json=body, headers=op, timeout=10)
    assert r.status_code == 201, r.text
    try:
        listing = httpx.get(f"{world.base}/api/cameras", headers=world.headers("viewer"), timeout=10).text
        assert "tail" not in listing and "S3cret" not in listing and "rtsp://***@10.0.0.9:554/main" in listing
        with world.ctx.index.engine.connect() as c:
            from sqlalchemy import text

            stored = c.execute(text("select main_url from cameras where id='cam-at'")).scalar()
        assert "tail" not in stored and "S3cret" not in stored  # encrypted at rest
    finally:
        world.registry.remove_camera("cam-at")


# -- finding 10: imports ------------------------------------------------------------------


def test_f10_yaml_alias_bomb_and_non_string_keys_get_small_4xx(world: SecurityWorld) -> None:
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{','.join('*' + p for p in [prev] * 9)}]\n" for prev, c in zip("abcdefgh", "bcdefghi"))
    bomb += "cameras: *i\n"
    op = world.headers("operator")
    r = httpx.post(f"{world.base}/api/cameras/import?format=yaml", content=bomb, headers=op, timeout=30)
    assert r.status_code == 422 and len(r.content) < 10_000 and "aliases" in r.text
    r = httpx.post(f"{world.base}/api/cameras/import?format=yaml", content="- {1: 2, id: c}\n", headers=op,
                   timeout=30)
    assert r.status_code == 422, r.text
    r = httpx.post(f"{world.base}/api/cameras/import?format=yaml", content="- {id: c, name: [1, 2]}\n",
                   headers=op, timeout=30)
    assert r.status_code == 422


def test_f10_import_caps_rows_and_writes_one_audit_row_per_batch(world: SecurityWorld) -> None:
    op = world.headers("operator")
    header = "id,name,region,main_url\n"
    rows = "".join(f"imp-{i},Cam {i},t1,rtsp://10.2.{i // 250}.{i % 250}/main\n" for i in range(1001))
    r = httpx.post(f"{world.base}/api/cameras/import?format=csv", content=header + rows, headers=op, timeout=60)
    assert r.status_code == 422 and "more than 1000 rows" in r.text
    first = world.last_audit_id()
    ok = "".join(f"imp-{i},Cam {i},t1,rtsp://10.2.0.{i}/main\n" for i in range(50))
    r = httpx.post(f"{world.base}/api/cameras/import?format=csv", content=header + ok, headers=op, timeout=60)
    assert r.status_code == 200 and r.json()["imported"] == 50
    try:
        rows_written = world.rows_since(first)
        assert [x.action for x in rows_written] == ["camera_import"]
        assert rows_written[0].user == "operator" and "50 camera(s)" in rows_written[0].detail
    finally:
        for i in range(50):
            world.registry.remove_camera(f"imp-{i}")


# -- finding 15: probes ------------------------------------------------------------------


def test_f15_probe_refuses_loopback_link_local_and_own_ports_and_is_audited(world: SecurityWorld) -> None:
    op = world.headers("operator")
    first = world.last_audit_id()
    for url in (f"rtsp://127.0.0.1:{world.port}/x", "rtsp://169.254.169.254/latest", "rtsp://[::1]:22/",
                "rtsp://localhost:5432/"):
        r = httpx.post(f"{world.base}/api/probe", json={"url": url, "timeout": 2}, headers=op, timeout=30)
        assert r.status_code == 403, (url, r.text)
    rows = world.rows_since(first, action="probe")
    assert len(rows) == 4 and {x.outcome for x in rows} == {"denied"} and rows[0].user == "operator"
    # A scan is many probes: the 11th within a minute waits.
    codes = [httpx.post(f"{world.base}/api/probe", json={"url": "rtsp://127.0.0.1:1/", "timeout": 1}, headers=op,
                        timeout=30).status_code for _ in range(8)]
    assert codes[-1] == 429 and set(codes[:6]) == {403}


# -- finding 16: bad input is a 4xx that says what to send -------------------------------


@pytest.mark.parametrize("value", ["1" * 5000, "²", "١٢٣", "0001-01-01T00:00:00+08:00", "9" * 30,
                                   "2027-01-01T00:00:00+25:00"])
def test_f16_bad_times_are_422(world: SecurityWorld, value: str) -> None:
    r = httpx.get(f"{world.base}/api/cameras/cam1/recordings", params={"start": value, "end": "1800000000000"},
                  headers=world.headers("investigator"), timeout=10)
    assert r.status_code == 422, (value, r.status_code, r.text[:200])
    assert any(hint in r.text for hint in ("send", "must", "run from")), r.text  # says what to send


def test_f16_non_ascii_and_huge_tokens_are_401(world: SecurityWorld) -> None:
    for token in ("Bearer éé.ü".encode(), "Bearer ½".encode("latin-1"), b"Bearer " + b"A" * 8000 + b".x"):
        answer = raw_http(world.port, b"GET /api/me HTTP/1.1\r\nHost: x\r\nAuthorization: " + token + b"\r\n\r\n")
        assert status_of(answer) == 401, answer[:200]
        answer = raw_http(world.port, b"GET /api/cameras/cam1/live.m3u8?token=%C3%A9%C3%A9.x HTTP/1.1\r\n"
                                      b"Host: x\r\n\r\n")
        assert status_of(answer) == 401, answer[:200]


def test_f16_huge_numbers_in_paths_and_queries_are_4xx(world: SecurityWorld) -> None:
    admin = world.headers("admin")
    for path in ("/api/keys/" + "9" * 5000, "/api/audit?before_id=" + "9" * 40, "/api/cameras/cam1/thumbnails/"
                 + "9" * 400 + ".jpg"):
        r = httpx.request("DELETE" if path.startswith("/api/keys") else "GET", world.base + path, headers=admin,
                          timeout=10)
        assert 400 <= r.status_code < 500, (path[:40], r.status_code, r.text[:200])


# -- finding 17: headers ------------------------------------------------------------------


def test_f17_console_and_api_send_security_headers(world: SecurityWorld) -> None:
    for path in ("/", "/api/ping", "/docs"):
        r = httpx.get(world.base + path, timeout=10)
        assert r.status_code == 200
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
    assert "cdn.jsdelivr.net" not in httpx.get(world.base + "/", timeout=10).headers["content-security-policy"]
    assert httpx.get(world.base + "/openapi.json", timeout=10).json()["info"]["title"] == "sharpeyes"


def test_f17_mse_websocket_checks_origin(world: SecurityWorld) -> None:
    import asyncio

    import websockets

    token = world.stream_token("viewer")
    url = f"{world.ws_base}/api/cameras/cam1/live.mp4?token={token}"

    async def connect(origin: str) -> str:
        try:
            async with websockets.connect(url, origin=origin) as ws:  # type: ignore[arg-type]
                await asyncio.wait_for(ws.recv(), 10)
                return "open"
        except websockets.exceptions.InvalidStatus as exc:
            return str(exc.response.status_code)

    assert asyncio.run(connect("http://evil.example")) == "403"
    assert asyncio.run(connect(f"http://127.0.0.1:{world.port}")) == "open"
