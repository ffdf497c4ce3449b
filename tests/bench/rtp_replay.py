"""Benchmark: the native RTSP receive path, replayed from a captured byte stream (repeatable).

    .venv/bin/python -m tests.bench.rtp_replay capture [--seconds 10] [--out /tmp/rtp-1080p.cap]
    .venv/bin/python -m tests.bench.rtp_replay replay [--cap /tmp/rtp-1080p.cap] [--repeat 20] [--profile]

``capture`` serves one 1080p25 ~4 Mbit/s H.264 camera with GStreamer's RTSP server (the
ingest_capacity bench's camera), pulls it with :class:`~ingest.rtp.rtsp_client.RtspClient`
over TCP interleaved, and saves every chunk ``data_received`` got after PLAY, with the
read boundaries the kernel gave, plus the SDP.

``replay`` feeds those chunks, in the same boundaries, through a client's connection
(``$`` framing, RTP parse, depacketising, access units to a sink), ``--repeat`` times,
and prints CPU seconds per camera-second of stream (the share of a core one camera
costs on this path alone: no socket, no event loop wake-ups, no segmenter). It takes the
best of the repeats, so a loaded machine moves it less; ``--profile`` prints cProfile's
top entries instead. For an instruction count that ignores the load entirely:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python -m tests.bench.rtp_replay replay --repeat 5
    (minus the same with --repeat 0: start-up and loading the capture)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pickle
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ingest.access_unit import AccessUnit
from ingest.rtp import rtsp_client
from ingest.rtp.rtsp_client import RtspClient, _Connection

DEFAULT_CAP = Path(tempfile.gettempdir()) / "rtp-1080p.cap"


def capture(seconds: float, out: Path) -> None:
    from tests.support.cameras import CameraServer, Mount

    work = Path(tempfile.mkdtemp(prefix="rtp-replay-"))
    server = CameraServer({"/cam": Mount("h264", size=(1920, 1080), label="bench", seconds=max(24, int(seconds) + 4))},
                          work).start(timeout=120)
    chunks: list[bytes] = []
    sdp: list[str] = []
    original = _Connection.data_received

    def recording(self: _Connection, data: bytes) -> None:
        if self.client.video is not None and self.client._channels:  # after SETUP: the stream
            chunks.append(bytes(data))
        original(self, data)

    _Connection.data_received = recording  # type: ignore[method-assign]
    units = 0

    def on_video(au: AccessUnit) -> None:
        nonlocal units
        units += 1

    async def pull() -> None:
        client = RtspClient(server.url("/cam"), on_video=on_video, camera_id="bench")
        task = asyncio.ensure_future(client.run())
        await asyncio.sleep(seconds)
        sdp.append(client.sdp_text)
        client.stop()
        await task

    try:
        asyncio.run(pull())
    finally:
        _Connection.data_received = original  # type: ignore[method-assign]
        server.stop()
    out.write_bytes(pickle.dumps({"sdp": sdp[0], "chunks": chunks, "seconds": seconds}))
    print(f"captured {len(chunks)} reads, {sum(map(len, chunks)) / 1e6:.1f} MB, {units} access units "
          f"in {seconds:.0f} s to {out}")


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def _wired_connection(sdp_text: str, sink: Any) -> tuple[RtspClient, _Connection]:
    """A client set up as after SETUP on channels 0/1 (TCP), without a camera."""
    client = RtspClient("rtsp://127.0.0.1/bench", on_video=sink, camera_id="bench")
    sdp = rtsp_client.parse_sdp(sdp_text)
    media = next(m for m in sdp.media if m.media == "video")
    client.video = rtsp_client._video_depacketizer(media)
    track = rtsp_client._Track(media, 0)
    client._tracks.append(track)
    client._bind_tcp_track(track, 0, 1, True)
    client.video.wallclock = client._wallclock_of(track)
    conn = _Connection(client)
    conn.transport = _NullTransport()  # type: ignore[assignment]
    client._conn = conn
    return client, conn


def replay(cap: Path, repeat: int, profile: bool) -> None:
    data = pickle.loads(cap.read_bytes())
    chunks: list[bytes] = data["chunks"]
    seconds: float = data["seconds"]

    async def run() -> None:
        best = float("inf")
        units = 0
        packets = 0
        prof = cProfile.Profile() if profile else None

        def sink(au: AccessUnit) -> None:
            nonlocal units
            units += 1

        for _ in range(repeat):
            client, conn = _wired_connection(data["sdp"], sink)
            feed = conn.data_received
            if prof is not None:
                prof.enable()
            t0 = time.process_time()
            for chunk in chunks:
                feed(chunk)
            used = time.process_time() - t0
            if prof is not None:
                prof.disable()
            best = min(best, used)
            packets = client.stats.packets
        if repeat:
            print(f"{len(chunks)} reads, {packets} RTP packets, {units // repeat} access units a pass; "
                  f"best of {repeat}: {best * 1e3:.1f} ms CPU for {seconds:.0f} s of stream = "
                  f"{100 * best / seconds:.3f} % of a core per camera, {1e6 * best / max(1, packets):.2f} µs a packet")
        if prof is not None:
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(18)

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("capture")
    c.add_argument("--seconds", type=float, default=10.0)
    c.add_argument("--out", type=Path, default=DEFAULT_CAP)
    r = sub.add_parser("replay")
    r.add_argument("--cap", type=Path, default=DEFAULT_CAP)
    r.add_argument("--repeat", type=int, default=20)
    r.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    if args.cmd == "capture":
        capture(args.seconds, args.out)
    else:
        replay(args.cap, args.repeat, args.profile)


if __name__ == "__main__":
    main()
