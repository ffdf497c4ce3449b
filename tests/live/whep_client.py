"""An aiortc WHEP receiver, shared by the tests and the benchmark."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError


@dataclass
class Receiver:
    pc: RTCPeerConnection
    location: str
    posted: float  # time.perf_counter() just before the POST
    frames: list = field(default_factory=list)
    first_frame: float | None = None
    got: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


async def whep_connect(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], keep: int = 10**9
) -> Receiver | httpx.Response:
    """POST an offer to ``url``; on 201, a Receiver whose frames fill in as they decode; else the response."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    posted = time.perf_counter()
    resp = await client.post(url, content=pc.localDescription.sdp,
                             headers={**headers, "Content-Type": "application/sdp"})
    if resp.status_code != 201:
        await pc.close()
        return resp
    receiver = Receiver(pc, resp.headers["location"], posted)

    async def read(track) -> None:  # type: ignore[no-untyped-def]
        try:
            while True:
                frame = await track.recv()
                if receiver.first_frame is None:
                    receiver.first_frame = time.perf_counter()
                if len(receiver.frames) < keep:
                    receiver.frames.append(frame)
                receiver.got.set()
        except MediaStreamError:
            pass

    @pc.on("track")
    def on_track(track) -> None:  # type: ignore[no-untyped-def]
        receiver.task = asyncio.ensure_future(read(track))

    await pc.setRemoteDescription(RTCSessionDescription(resp.text, "answer"))
    return receiver


async def wait_frames(receiver: Receiver, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.frames) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(receiver.frames)} frames decoded, wanted {n}")
        receiver.got.clear()
        try:
            await asyncio.wait_for(receiver.got.wait(), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            pass


async def close(receiver: Receiver) -> None:
    if receiver.task is not None:
        receiver.task.cancel()
    await receiver.pc.close()
