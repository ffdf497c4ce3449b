"""The RTSP server and simulated cameras against real clients: PyAV (libavformat) and ffprobe.

The server runs in-process on a free port, on an event loop in a background thread. The
loop is 2 s with a 1 s GOP, so every test that reads 3+ s of stream crosses a loop wrap.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import av
import pytest

from streams.background import BackgroundLoop
from streams.rtsp.server import RtspServer
from streams.demo.simulated import SimulatedCameras, StreamSpec, start_simulated_cameras

FPS = 25
LOOP_FRAMES = 2 * FPS
MAIN = StreamSpec(640, 360, FPS, bit_rate=500_000, loop_seconds=2, gop_seconds=1)
SUB = StreamSpec(320, 180, FPS, bit_rate=200_000, loop_seconds=2, gop_seconds=1)
MAX_QUEUE = 25  # small, so a stalled client overflows within a couple of seconds


@dataclass
class Env:
    bg: BackgroundLoop
    cams: SimulatedCameras

    @property
    def server(self) -> RtspServer:
        return self.cams.server

    def url(self, path: str = "sim-1") -> str:
        return self.cams.urls.get(path) or self.server.url(path)

    def on_loop(self, fn, *args):  # run a plain function on the server's loop thread
        async def call():
            return fn(*args)

        return self.bg.run(call(), timeout=10)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    bg = BackgroundLoop()
    data_dir = tmp_path_factory.mktemp("data")
    cams = bg.run(
        start_simulated_cameras(1, data_dir, "127.0.0.1", 0, main=MAIN, sub=SUB, max_queue=MAX_QUEUE,
            send_buffer=16384),
        timeout=120,
    )
    try:
        yield Env(bg, cams)
    finally:
        bg.run(cams.close(), timeout=10)
        bg.stop()


@dataclass
class Received:
    width: int
    height: int
    codec: str
    pts: list[int]
    keyframes: list[int]  # indexes into pts
    frames: int
    packets: int
    seconds: float  # from open to the last packet


def read_stream(url: str, packets: int, transport: str = "tcp") -> Received:
    """Open ``url`` with PyAV, demux and decode ``packets`` video packets."""
    started = time.monotonic()
    with av.open(url, options={"rtsp_transport": transport}, timeout=(5, 5)) as container:
        stream = container.streams.video[0]
        pts: list[int] = []
        keys: list[int] = []
        frames = n = 0
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            n += 1
            # libavformat's H.264 RTP parser gives the first packet no pts; keep decoding it.
            if packet.pts is not None:
                if packet.is_keyframe:
                    keys.append(len(pts))
                pts.append(packet.pts)
            frames += len(packet.decode())  # raises on a decode error
            if n >= packets:
                break
        cc = stream.codec_context
        return Received(cc.width, cc.height, cc.name, pts, keys, frames, n, time.monotonic() - started)


def assert_continuous(got: Received, packets: int) -> None:
    assert got.packets == packets
    assert got.frames >= packets - 3  # a decoder may hold back a frame or two
    steps = {b - a for a, b in zip(got.pts, got.pts[1:])}
    assert steps == {90000 // FPS}, f"pts steps {sorted(steps)[:10]}"
    gaps = {b - a for a, b in zip(got.keyframes, got.keyframes[1:])}
    assert gaps <= {FPS}, f"keyframe spacing {gaps}"


# -- a raw RTSP client, for the protocol details PyAV hides --------------------------------


class RawClient:
    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")
        self.cseq = 0

    def request(self, method: str, url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}"]
        lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return self.response()

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while True:
            first = self.file.read(1)
            if first == b"$":  # skip interleaved RTP
                head = self.file.read(3)
                self.file.read(int.from_bytes(head[1:3], "big"))
                continue
            status = (first + self.file.readline()).decode().split(" ")
            headers = {}
            while (line := self.file.readline().decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.file.read(int(headers.get("content-length", 0)))
            assert headers["cseq"] == str(self.cseq)
            return int(status[1]), headers, body

    def play_tcp(self, url: str) -> str:
        status, _, _ = self.request("DESCRIBE", url)
        assert status == 200
        status, headers, _ = self.request("SETUP", url + "/trackID=0", Transport="RTP/AVP/TCP;unicast;interleaved=0-1")
        assert status == 200
        session = headers["session"].split(";")[0]
        status, headers, _ = self.request("PLAY", url, Session=session)
        assert status == 200
        return session

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# -- protocol -----------------------------------------------------------------------------


def test_describe_gives_h264_sdp(env: Env) -> None:
    client = RawClient(env.server.port)
    try:
        status, _, _ = client.request("OPTIONS", env.url())
        assert status == 200
        status, headers, body = client.request("DESCRIBE", env.url(), Accept="application/sdp")
    finally:
        client.close()
    assert status == 200
    assert headers["content-type"] == "application/sdp"
    assert headers["content-base"] == env.url() + "/"
    sdp = body.decode()
    assert "m=video 0 RTP/AVP 96" in sdp
    assert "a=rtpmap:96 H264/90000" in sdp
    assert "a=fmtp:96 packetization-mode=1;profile-level-id=42C0" in sdp
    assert "sprop-parameter-sets=Z" in sdp
    assert "a=control:trackID=0" in sdp


def test_unknown_path_is_404(env: Env) -> None:
    client = RawClient(env.server.port)
    try:
        assert client.request("DESCRIBE", env.url("nope"))[0] == 404
        assert client.request("SETUP", env.url("nope") + "/trackID=0", Transport="RTP/AVP/TCP;interleaved=0-1")[0] == 404
    finally:
        client.close()
    with pytest.raises(av.error.FFmpegError):
        av.open(env.url("nope"), options={"rtsp_transport": "tcp"}, timeout=(5, 5))


def test_session_and_transport_errors(env: Env) -> None:
    client = RawClient(env.server.port)
    try:
        assert client.request("PLAY", env.url())[0] == 454
        assert client.request("PLAY", env.url(), Session="deadbeef")[0] == 454
        assert client.request("TEARDOWN", env.url(), Session="deadbeef")[0] == 454
        multicast = "RTP/AVP;multicast;destination=224.2.0.1;port=5000-5001"
        assert client.request("SETUP", env.url() + "/trackID=0", Transport=multicast)[0] == 461
        assert client.request("RECORD", env.url())[0] == 501
        status, headers, _ = client.request("SETUP", env.url() + "/trackID=0", Transport="RTP/AVP/TCP;unicast")
        assert status == 200
        assert headers["transport"].startswith("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=")
        session = headers["session"].split(";")[0]
        assert client.request("GET_PARAMETER", env.url(), Session=session)[0] == 200
        status, headers, _ = client.request("PLAY", env.url(), Session=session)
        assert status == 200
        assert headers["rtp-info"].startswith(f"url={env.url()}/trackID=0;seq=")
        assert client.request("TEARDOWN", env.url(), Session=session)[0] == 200
        assert client.request("GET_PARAMETER", env.url(), Session=session)[0] == 454
    finally:
        client.close()


def test_bad_request_is_400_and_closes(env: Env) -> None:
    client = RawClient(env.server.port)
    try:
        client.sock.sendall(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: lots\r\n\r\n")
        assert client.file.readline().startswith(b"RTSP/1.0 400")
        while client.file.readline():
            pass  # the server closes the connection
    finally:
        client.close()


def test_idle_session_times_out(env: Env) -> None:
    server = RtspServer("127.0.0.1", 0, session_timeout=1.0)
    server.add_path("cam", env.cams.sources["sim-1"])
    env.bg.run(server.start())
    client = RawClient(server.port)
    try:
        status, headers, _ = client.request("SETUP", server.url("cam") + "/trackID=0", Transport="RTP/AVP/TCP;unicast")
        assert status == 200 and headers["session"].endswith(";timeout=1")
        assert env.on_loop(server.session_count, "cam") == 1
        deadline = time.monotonic() + 5
        while env.on_loop(server.session_count, "cam") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert env.on_loop(server.session_count, "cam") == 0
    finally:
        client.close()
        env.bg.run(server.close())


# -- real clients ---------------------------------------------------------------------------


def test_pyav_tcp_decodes_across_loop_wrap(env: Env) -> None:
    packets = LOOP_FRAMES + 2 * FPS  # 4 s: at least one wrap, wherever the loop is
    got = read_stream(env.url(), packets)
    assert (got.codec, got.width, got.height) == ("h264", 640, 360)
    assert_continuous(got, packets)
    # Real-time pace after the cached GOP burst: not much faster, not slower.
    assert (packets - 2 * FPS) / FPS - 0.5 < got.seconds < packets / FPS + 2.5


def test_pyav_sub_stream(env: Env) -> None:
    got = read_stream(env.url("sim-1/sub"), FPS)
    assert (got.codec, got.width, got.height) == ("h264", 320, 180)
    assert_continuous(got, FPS)


def test_pyav_udp(env: Env) -> None:
    packets = LOOP_FRAMES + FPS
    got = read_stream(env.url(), packets, transport="udp")
    assert (got.width, got.height) == (640, 360)
    assert_continuous(got, packets)


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")
def test_ffprobe(env: Env) -> None:
    cmd = [
        "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-timeout", "5000000",
        "-select_streams", "v:0", "-read_intervals", "%+3",
        "-show_entries", "stream=codec_name,width,height,avg_frame_rate,profile:packet=pts,flags",
        "-of", "json", env.url(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""
    info = json.loads(proc.stdout)
    stream = info["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 640, 360)
    assert stream["avg_frame_rate"] == "25/1"
    pts = [int(p["pts"]) for p in info["packets"] if "pts" in p]
    assert len(pts) >= 2 * FPS
    assert {b - a for a, b in zip(pts, pts[1:])} == {3600}


def test_two_clients_at_once(env: Env) -> None:
    results: dict[int, Received] = {}
    counts: list[int] = []

    def reader(i: int) -> None:
        results[i] = read_stream(env.url(), 2 * FPS)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        counts.append(env.on_loop(env.server.session_count, "sim-1"))
        time.sleep(0.2)
    for t in threads:
        t.join()
    assert max(counts) == 2
    for got in results.values():
        assert_continuous(got, 2 * FPS)


def test_slow_client_does_not_stall_another(env: Env) -> None:
    # The slow client plays and then never reads. Its tiny receive buffer and the
    # server's 16 KiB send buffer (see the fixture) make the server's queue for it
    # overflow within about a second.
    slow = RawClient(env.server.port, rcvbuf=4096)
    try:
        session = slow.play_tcp(env.url())
        got = read_stream(env.url(), 3 * FPS)
        assert_continuous(got, 3 * FPS)
        assert got.seconds < 3 + 2.5  # kept real-time pace
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            infos = {s.id: s for s in env.on_loop(env.server.sessions)}
            if infos[session].dropped_access_units > 0:
                break  # the slow one skipped to a later keyframe instead of stalling anyone
            time.sleep(0.2)
        assert infos[session].dropped_access_units > 0
    finally:
        slow.close()
    deadline = time.monotonic() + 5
    while env.on_loop(env.server.session_count, "sim-1") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert env.on_loop(env.server.session_count, "sim-1") == 0
