"""Live-view benchmark: first-frame time and server CPU per viewer, WebRTC (WHEP) and MSE.

Run directly (not collected by pytest):

    cd /work/wt/X && PYTHONPATH=$PWD SHARPEYES_TEST_CAMERA_SIZE=640x360 \\
        /work/main/.venv/bin/python tests/bench/live.py [--trials 20] [--viewers 1,10] [--seconds 10]

Set-up: one GStreamer RTSP camera (2 s GOP, 25 fps), a real Supervisor pulling and recording
it, and the app on uvicorn, all in this process (the "server"). Receivers run in a second
process (this script with ``--receive``), so their decoding is not charged to the server.

- First frame: time from the WHEP POST (or WebSocket connect) to the first decoded frame,
  ``--trials`` times, p50/p95; the baseline is the same with the GOP cache bypassed (each
  new viewer waits for the next keyframe), measured in the same run.
- Delay: from the access unit's arrival at the hub (the camera's RTSP packets demuxed; on
  loopback the camera is < 1 ms before that) to the frame decoded at a receiver in this
  process, matched by the camera's burned-in frame code. It is the delay this server adds
  (plus the receiver's jitter buffer), not the camera's encode delay.
- CPU per viewer: the server process's CPU seconds per wall second with N viewers, minus
  the same with none (pulling + recording only), divided by N.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# -- receivers (the second process) ----------------------------------------------------


async def first_frame_webrtc(base: str, headers: dict[str, str]) -> float:
    from tests.live.whep_client import close, wait_frames, whep_connect

    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        r = await whep_connect(client, "/api/cameras/cam1/whep", headers, keep=1)
        assert not isinstance(r, httpx.Response), r.text
        await wait_frames(r, 1, timeout=20)
        assert r.first_frame is not None
        took = r.first_frame - r.posted
        await client.delete(r.location, headers=headers)
        await close(r)
        return took


async def first_frame_mse(ws_base: str, token: str) -> float:
    import websockets

    start = time.perf_counter()
    async with websockets.connect(f"{ws_base}/api/cameras/cam1/live.mp4?token={token}") as ws:
        await ws.recv()  # the JSON description
        data = await ws.recv()  # the init segment
        while True:  # add fragments until PyAV decodes a frame from init + fragments
            data += await ws.recv()
            try:
                with av.open(io.BytesIO(data), format="mp4") as c:
                    for _frame in c.decode(video=0):
                        return time.perf_counter() - start
            except av.error.FFmpegError:
                continue


async def hold_viewers(mode: str, n: int, seconds: float, base: str, auth: str) -> None:
    """Connect n viewers, print READY once all have a frame, keep them for ``seconds``."""
    headers = {"Authorization": auth}
    if mode == "webrtc":
        from tests.live.whep_client import close, wait_frames, whep_connect

        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            receivers = [await whep_connect(client, "/api/cameras/cam1/whep", headers, keep=1) for _ in range(n)]
            await asyncio.gather(*(wait_frames(r, 1, timeout=60) for r in receivers))  # type: ignore[arg-type]
            print("READY", flush=True)
            await asyncio.sleep(seconds)
            for r in receivers:
                await client.delete(r.location, headers=headers)  # type: ignore[union-attr]
                await close(r)  # type: ignore[arg-type]
    else:
        import websockets

        token = httpx.post(f"{base}/api/cameras/cam1/stream-token", headers=headers).json()["token"]
        ws_base = base.replace("http://", "ws://")
        received = [0] * n

        async def one(i: int, ready: asyncio.Event) -> None:
            async with websockets.connect(f"{ws_base}/api/cameras/cam1/live.mp4?token={token}", max_size=None) as ws:
                async for _message in ws:
                    received[i] += 1
                    if received[i] == 3:
                        ready.set()
                    if stop.is_set():
                        return

        stop = asyncio.Event()
        events = [asyncio.Event() for _ in range(n)]
        tasks = [asyncio.ensure_future(one(i, events[i])) for i in range(n)]
        await asyncio.gather(*(e.wait() for e in events))
        print("READY", flush=True)
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait(tasks, timeout=5)


# -- delay ---------------------------------------------------------------------------


class ArrivalClock:
    """A session tap that decodes each access unit as it reaches the hub and notes when, by frame code."""

    def __init__(self) -> None:
        self.decoder = av.CodecContext.create("h264", "r")
        self.arrival: dict[int, float] = {}

    def __call__(self, packet: av.Packet) -> None:
        from tests.support.clips import read_frame_code

        if packet.stream is None or packet.stream.type != "video":
            return
        now = time.time()
        try:
            for frame in self.decoder.decode(av.Packet(bytes(packet))):
                self.arrival[read_frame_code(frame.to_ndarray(format="gray"))] = now
        except (ValueError, av.error.FFmpegError):
            pass


async def delays_webrtc(base: str, headers: dict[str, str], clock: ArrivalClock, samples: int) -> list[float]:
    from tests.live.whep_client import close, wait_frames, whep_connect
    from tests.support.clips import read_frame_code

    async with httpx.AsyncClient(base_url=base, timeout=20) as client:
        r = await whep_connect(client, "/api/cameras/cam1/whep", headers)
        assert not isinstance(r, httpx.Response), r.text
        await wait_frames(r, 1)
        await asyncio.sleep(3)  # past the GOP-cache burst: measure the steady state
        r.frames.clear()
        out: list[float] = []
        while len(out) < samples:
            r.got.clear()
            await asyncio.wait_for(r.got.wait(), 10)
            now = time.time()
            frames, r.frames[:] = list(r.frames), []
            for frame in frames[-1:]:
                try:
                    code = read_frame_code(frame.to_ndarray(format="gray"))
                except ValueError:
                    continue
                if code in clock.arrival:
                    out.append(now - clock.arrival[code])
        await client.delete(r.location, headers=headers)
        await close(r)
        return out


async def delays_mse(ws_base: str, token: str, clock: ArrivalClock, samples: int) -> list[float]:
    import struct

    import websockets

    from tests.support.clips import read_frame_code

    decoder = av.CodecContext.create("h264", "r")
    out: list[float] = []
    async with websockets.connect(f"{ws_base}/api/cameras/cam1/live.mp4?token={token}") as ws:
        await ws.recv()
        await ws.recv()
        start = time.monotonic()
        while len(out) < samples:
            data = await ws.recv()
            now = time.time()
            mdat = data[struct.unpack(">I", data[:4])[0] + 8:]  # moof, then the mdat payload
            annexb, pos = b"", 0
            while pos < len(mdat):
                n = struct.unpack(">I", mdat[pos:pos + 4])[0]
                annexb += b"\x00\x00\x00\x01" + mdat[pos + 4:pos + 4 + n]
                pos += 4 + n
            for frame in decoder.decode(av.Packet(annexb)):
                if time.monotonic() - start < 3:
                    continue  # past the GOP-cache burst
                try:
                    code = read_frame_code(frame.to_ndarray(format="gray"))
                except ValueError:
                    continue
                if code in clock.arrival:
                    out.append(now - clock.arrival[code])
    return out


# -- the server side -----------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--viewers", default="1,10")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--receive", choices=["webrtc", "mse"])
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--base", default="")
    ap.add_argument("--auth", default="")
    args = ap.parse_args()
    if args.receive:
        from streams.live.webrtc import use_host_addresses

        use_host_addresses(["127.0.0.1"])
        asyncio.run(hold_viewers(args.receive, args.n, args.seconds, args.base, args.auth))
        return
    run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    from argon2 import PasswordHasher

    from config.cameras import Camera, Region
    from config.settings import Settings
    from ingest.live.hub import LiveHub
    from ingest.supervisor import Supervisor
    from streams.access.audit import AuditLog
    from storage.db.engine import open_engine
    from storage.index.segments import SegmentIndex
    from storage.index.registry import Registry
    from storage.index.credentials import load_cipher
    from storage.objects.open import open_object_store
    from streams.access.users import UserStore
    from streams.app import create_app
    from streams.access.guard import AuthState
    from streams.context import AppContext
    from streams.access.tokens import TokenSigner
    from tests.support.http import UvicornThread
    from tests.support.cameras import CameraServer, Mount, camera_size, free_port

    size = camera_size()
    tmp = Path(tempfile.mkdtemp(prefix="sharpeyes-bench-live-"))
    (tmp / "cams").mkdir()
    cams = CameraServer({"/cam1": Mount("h264", size=size, label="bench", gop_seconds=2)}, tmp / "cams").start()
    settings = Settings(data_dir=tmp, webrtc_host_addresses=["127.0.0.1"], live_max_viewers=1000,
                        segment_target_seconds=10, worker_id="bench")
    engine = open_engine(settings.database_url)
    cipher = load_cipher(tmp)
    registry = Registry(engine, cipher)
    registry.add_region(Region(code="county", name="County"))
    registry.add_camera(Camera(id="cam1", name="Bench", region="county", main_url=cams.url("/cam1")))
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("bench", "bench password", "viewer", ["*"])
    state = AuthState(users=users, audit=AuditLog(engine), tokens=TokenSigner(cipher.derive("sharpeyes token signing v1")))
    index = SegmentIndex(engine)
    store = open_object_store(settings)
    supervisor = Supervisor(settings, registry, index, store)
    app = create_app(AppContext(settings=settings, index=index, registry=registry, store=store,
                                supervisor=supervisor, auth=state))
    port = free_port()
    server = UvicornThread(app, port).start()
    supervisor.start()
    base = f"http://127.0.0.1:{port}"
    auth = f"Bearer {state.tokens.issue('access', 'bench')[0]}"
    headers = {"Authorization": auth}
    try:
        deadline = time.monotonic() + 30
        while not ((hub := supervisor.live.get("cam1", "main")) and hub.online and hub.has_gop):
            if time.monotonic() > deadline:
                raise SystemExit("camera did not come online")
            time.sleep(0.1)
        print(f"machine: {os.cpu_count()} CPU ({_cpu_model()}), shared; camera {size[0]}x{size[1]} 25 fps, 2 s GOP, "
              f"H.264 via GStreamer RTSP on loopback")
        report: dict[str, object] = {}
        for mode in ("webrtc", "mse"):
            cached = first_frames(mode, args.trials, base, headers)
            original = LiveHub.subscribe

            def no_cache(self, max_queue=None, original=original):  # type: ignore[no-untyped-def]
                sub = original(self, max_queue)
                while sub.get_nowait() is not None:  # drop the cached GOP: wait for the next keyframe
                    pass
                return sub

            LiveHub.subscribe = no_cache  # type: ignore[method-assign]
            try:
                uncached = first_frames(mode, max(5, args.trials // 4), base, headers)
            finally:
                LiveHub.subscribe = original  # type: ignore[method-assign]
            p50, p95 = pct(cached, 0.5), pct(cached, 0.95)
            b50 = pct(uncached, 0.5)
            print(f"{mode:6s} first frame: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms ({len(cached)} trials); "
                  f"without GOP cache p50 {b50 * 1000:.0f} ms ({len(uncached)} trials): {b50 / p50:.1f}x slower")
            report[f"{mode}_first_frame_ms"] = {"p50": p50 * 1000, "p95": p95 * 1000, "no_cache_p50": b50 * 1000}
        clock = ArrivalClock()
        hub.session.taps.append(clock)  # type: ignore[union-attr]
        try:
            for mode in ("webrtc", "mse"):
                if mode == "webrtc":
                    delays = asyncio.run(delays_webrtc(base, headers, clock, 100))
                else:
                    token = httpx.post(f"{base}/api/cameras/cam1/stream-token", headers=headers).json()["token"]
                    delays = asyncio.run(delays_mse(base.replace("http://", "ws://"), token, clock, 100))
                print(f"{mode:6s} delay hub arrival -> decoded at the receiver: p50 {pct(delays, 0.5) * 1000:.0f} ms, "
                      f"p95 {pct(delays, 0.95) * 1000:.0f} ms ({len(delays)} frames)")
                report[f"{mode}_delay_ms"] = {"p50": pct(delays, 0.5) * 1000, "p95": pct(delays, 0.95) * 1000}
        finally:
            hub.session.taps.remove(clock)  # type: ignore[union-attr]
        idle = cpu_rate(None, 0, args.seconds, base, auth)
        print(f"server CPU with no viewers (pull + record): {idle * 100:.1f} % of a core")
        from streams.live import webrtc as live_webrtc

        for mode in ("webrtc-stock", "webrtc", "mse"):
            # webrtc-stock: aiortc packetises every frame again per viewer (the baseline);
            # webrtc: payloads made once per access unit and shared (what we ship).
            live_webrtc.PACKETISE_ONCE = mode != "webrtc-stock"
            for n in [int(x) for x in args.viewers.split(",")]:
                busy = cpu_rate(mode.split("-")[0], n, args.seconds, base, auth)
                per = (busy - idle) / n
                per_core = 1 / per if per > 0 else float("inf")
                print(f"{mode:12s} {n:3d} viewers: server {busy * 100:.1f} % of a core, "
                      f"{per * 100:.2f} % per viewer (~{per_core:.0f} viewers per core)")
                report[f"{mode}_cpu_{n}"] = {"total_pct": busy * 100, "per_viewer_pct": per * 100}
        live_webrtc.PACKETISE_ONCE = True
        print(json.dumps(report))
    finally:
        server.stop()
        supervisor.close()
        cams.stop()


def first_frames(mode: str, trials: int, base: str, headers: dict[str, str]) -> list[float]:
    out = []
    for _ in range(trials):
        if mode == "webrtc":
            out.append(asyncio.run(first_frame_webrtc(base, headers)))
        else:
            token = httpx.post(f"{base}/api/cameras/cam1/stream-token", headers=headers).json()["token"]
            out.append(asyncio.run(first_frame_mse(base.replace("http://", "ws://"), token)))
        time.sleep(0.3)  # land at a random point in the GOP
    return out


def cpu_rate(mode: str | None, n: int, seconds: float, base: str, auth: str) -> float:
    """Server CPU seconds per wall second while ``n`` viewers of ``mode`` watch."""
    proc = None
    if mode is not None:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--receive", mode, "--n", str(n), "--seconds", str(seconds + 2),
             "--base", base, "--auth", auth],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "READY" not in line:
            proc.kill()
            raise SystemExit(f"{mode} receivers did not start: {line!r}")
        time.sleep(1)  # past the GOP-cache burst
    c0, t0 = cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    rate = (cpu_seconds() - c0) / (time.monotonic() - t0)
    if proc is not None:
        proc.wait(60)
    return rate


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
