"""Finding 6: the RTSP restream asks who is watching, audits it, and bounds what one client holds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

import av
import httpx

from tests.security.conftest import SecurityWorld


def _rtsp(sock: socket.socket, request: str) -> str:
    sock.sendall(request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = [int(line.split(":")[1]) for line in head.decode().split("\r\n")
              if line.lower().startswith("content-length")]
    while length and len(rest) < length[0]:
        rest += sock.recv(65536)
    return head.decode()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_f06_the_restream_needs_a_stream_token_and_audits_the_viewing(world: SecurityWorld) -> None:
    base = f"rtsp://127.0.0.1:{world.rtsp_port}"
    with socket.create_connection(("127.0.0.1", world.rtsp_port), timeout=10) as s:
        answer = _rtsp(s, f"DESCRIBE {base}/cam1 RTSP/1.0\r\nCSeq: 1\r\n\r\n")
    assert answer.startswith("RTSP/1.0 401") and "WWW-Authenticate" in answer
    name = world.new_user("viewer")
    token = world.stream_token(name)
    with socket.create_connection(("127.0.0.1", world.rtsp_port), timeout=10) as s:
        assert _rtsp(s, f"DESCRIBE {base}/cam2?token={token} RTSP/1.0\r\nCSeq: 1\r\n\r\n").startswith("RTSP/1.0 401")
    first = world.last_audit_id()
    out = subprocess.run(["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-show_streams", "-of", "json",
                          f"{base}/cam1?token={token}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["streams"][0]["codec_name"] == "h264"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(world.rows_since(first, user=name)) < 2:
        time.sleep(0.2)
    rows = world.rows_since(first, user=name)
    assert [(r.action, r.camera_id, r.client_ip) for r in rows] == [
        ("live_start", "cam1", "127.0.0.1"), ("live_stop", "cam1", "127.0.0.1")]


def test_f06_an_api_key_works_as_the_basic_password(world: SecurityWorld) -> None:
    r = httpx.post(f"{world.base}/api/keys", json={"name": "platform", "role": "viewer", "regions": ["t1"]},
                   headers=world.headers("admin"), timeout=10)
    key = r.json()["key"]
    with av.open(f"rtsp://platform:{key}@127.0.0.1:{world.rtsp_port}/cam1", options={"rtsp_transport": "tcp"},
                 timeout=10) as c:
        assert c.streams.video[0].codec_context.name == "h264"


def test_f06_idle_and_slow_header_connections_are_closed(world: SecurityWorld) -> None:
    idle = socket.create_connection(("127.0.0.1", world.rtsp_port), timeout=10)
    assert _closed_within(idle, world.settings.rtsp_idle_timeout_seconds + 5)
    slow = socket.create_connection(("127.0.0.1", world.rtsp_port), timeout=10)
    started = time.monotonic()
    closed = False
    for byte in b"DESCRIBE rtsp://127.0.0.1/cam1 RTSP/1.0\r\nCSeq: 1\r\nX-Slow: " + b"a" * 40:
        try:
            slow.send(bytes([byte]))
        except OSError:
            closed = True
            break
        if _closed_within(slow, 0.5):
            closed = True
            break
    assert closed and time.monotonic() - started < 18  # header_timeout is 10 s
    idle.close()
    slow.close()


def test_f06_one_client_is_capped_and_udp_setups_do_not_outlive_the_connection(world: SecurityWorld) -> None:
    server = world.app.state.rtsp_server
    token = world.stream_token(world.new_user("viewer"))
    fds_before = len(os.listdir("/proc/self/fd"))
    base = f"rtsp://127.0.0.1:{world.rtsp_port}/cam1"
    s = socket.create_connection(("127.0.0.1", world.rtsp_port), timeout=10)
    assert _rtsp(s, f"DESCRIBE {base}?token={token} RTSP/1.0\r\nCSeq: 1\r\n\r\n").startswith("RTSP/1.0 200")
    codes = []
    for n in range(100):
        answer = _rtsp(s, f"SETUP {base}/trackID=0 RTSP/1.0\r\nCSeq: {n + 2}\r\n"
                          f"Transport: RTP/AVP;unicast;client_port={40000 + 2 * n}-{40001 + 2 * n}\r\n\r\n")
        codes.append(int(answer.split(" ")[1]))
    assert codes.count(200) == world.settings.rtsp_max_sessions_per_connection and set(codes[4:]) == {453}
    s.close()
    deadline = time.monotonic() + 5
    while server.session_count("cam1") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.session_count("cam1") == 0
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
    # Connections per address.
    many = [socket.create_connection(("127.0.0.1", world.rtsp_port), timeout=10) for _ in range(20)]
    refused = sum(_closed_within(c, 1) for c in many)
    assert refused >= 20 - world.settings.rtsp_max_connections_per_client
    for c in many:
        c.close()


def test_f06_a_disabled_users_restream_session_ends(world: SecurityWorld) -> None:
    name = world.new_user("viewer")
    token = world.stream_token(name)
    frames: list[float] = []
    done: list[str] = []

    def watch() -> None:
        try:
            with av.open(f"rtsp://127.0.0.1:{world.rtsp_port}/cam1?token={token}",
                         options={"rtsp_transport": "tcp", "stimeout": "3000000"}, timeout=5) as c:
                for _ in c.demux(video=0):
                    frames.append(time.monotonic())
        except Exception as exc:  # noqa: BLE001 - the end is what we wait for
            done.append(type(exc).__name__)
        done.append("end")

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while len(frames) < 25 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(frames) >= 25
    world.users.disable(name)
    disabled = time.monotonic()
    t.join(15)
    assert done, "the RTSP session outlived its user"
    assert not [f for f in frames if f > disabled + 4]
