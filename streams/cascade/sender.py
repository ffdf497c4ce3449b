"""``PsRtpSender``: one camera's live hub as MPEG-PS over RTP, to an upper platform that INVITEd it.

It subscribes to the hub (on the viewers' event loop, where hubs publish), muxes each access unit
with ``PsMuxer`` (a PSM before every keyframe, H.264 or H.265 from the hub's codec) and sends it
as RTP (payload type 96, 90 kHz timestamps from the access unit, the marker on the last packet of
a frame, the SSRC agreed in ``y=``) over UDP, or over TCP with RFC 4571 framing: we connect (the
platform offered ``a=setup:passive``) or we listen and it connects (``a=setup:active``). A
subscriber that falls behind skips to the next keyframe (the hub's rule), so a slow upper link
never slows the recording.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from dataclasses import dataclass

from typing import Any, Callable, Protocol

from ingest.gb28181.psmux import PsMuxer

log = logging.getLogger(__name__)

RTP_PAYLOAD = 1400
PT_PS = 96


class AccessUnitSource(Protocol):
    """A live hub, or the demo's simulated loop: a codec and a subscription of access units."""

    @property
    def codec(self) -> Any: ...

    def subscribe(self) -> Any: ...


@dataclass
class SenderStats:
    frames: int = 0
    packets: int = 0
    bytes: int = 0
    error: str = ""


class PsRtpSender:
    """Sends ``hub``'s stream to ``(host, port)``; ``mode``: ``udp``, ``tcp-connect`` or ``tcp-listen``."""

    def __init__(self, hub: AccessUnitSource, host: str, port: int, ssrc: int, mode: str, listen_port: int = 0,
                 bind_host: str = "0.0.0.0", on_end: Callable[[], None] | None = None) -> None:
        """``on_end`` is called (on the sender's loop) when the source runs out, as an archive
        range does, or the link fails; not when ``stop()`` ends it."""
        self.hub = hub
        self.host, self.port = host, port
        self.ssrc = ssrc & 0xFFFFFFFF
        self.mode = mode
        self.listen_port = listen_port
        self.bind_host = bind_host
        self.stats = SenderStats()
        self.on_end = on_end
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start on ``loop`` (the hubs' loop), from any thread."""
        def go() -> None:
            self._task = loop.create_task(self._run())
        loop.call_soon_threadsafe(go)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        def cancel() -> None:
            if self._task is not None:
                self._task.cancel()
        loop.call_soon_threadsafe(cancel)

    def _packets(self, ps: bytes, ts: int) -> list[bytes]:
        out = []
        for off in range(0, len(ps), RTP_PAYLOAD):
            last = off + RTP_PAYLOAD >= len(ps)
            out.append(struct.pack("!BBHII", 0x80, (0x80 if last else 0) | PT_PS, self._seq, ts & 0xFFFFFFFF,
                                   self.ssrc) + ps[off : off + RTP_PAYLOAD])
            self._seq = (self._seq + 1) & 0xFFFF
        return out

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        udp: socket.socket | None = None
        writer: asyncio.StreamWriter | None = None
        server: asyncio.base_events.Server | None = None
        sub = self.hub.subscribe()
        try:
            if self.mode == "udp":
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                udp.setblocking(False)
            elif self.mode == "tcp-connect":
                _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
            else:
                accepted: asyncio.Future[asyncio.StreamWriter] = loop.create_future()

                def on_conn(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                    if not accepted.done():
                        accepted.set_result(w)
                server = await asyncio.start_server(on_conn, self.bind_host, self.listen_port, reuse_address=True)
                writer = await asyncio.wait_for(accepted, 20)
            mux: PsMuxer | None = None
            async for au in sub:
                codec = self.hub.codec
                if mux is None or mux.codec != codec:
                    mux = PsMuxer(codec)
                ps = mux.mux(au.nals, au.pts_90k, au.keyframe)
                self.stats.frames += 1
                for pkt in self._packets(ps, au.pts_90k):
                    self.stats.packets += 1
                    self.stats.bytes += len(pkt)
                    if udp is not None:
                        try:
                            udp.sendto(pkt, (self.host, self.port))
                        except (BlockingIOError, ConnectionRefusedError):
                            pass  # a full buffer or an ICMP from a platform not yet listening: drop
                    elif writer is not None:
                        writer.write(struct.pack("!H", len(pkt)) + pkt)
                if writer is not None:
                    await writer.drain()
        except asyncio.CancelledError:
            raise
        except (OSError, asyncio.TimeoutError) as exc:
            self.stats.error = f"{type(exc).__name__}: {exc}"
            log.warning("PS sender for %s to %s:%d ended: %s", getattr(self.hub, "camera_id", "?"), self.host,
                        self.port, exc)
        finally:
            sub.close()
            if udp is not None:
                udp.close()
            if writer is not None:
                writer.close()
            if server is not None:
                server.close()
        if self.on_end is not None:  # not reached when cancelled: stop() was asked for
            self.on_end()
