"""A lossy loopback path for RTSP over UDP: relays RTSP over TCP, and the camera's RTP datagrams
to the client through sockets of its own, dropping and reordering a share of them.

    proxy = LossyRtspProxy("127.0.0.1", upstream_port, loss=0.01, reorder=0.01).start()
    url = proxy.url("/cam1")   # rtsp://127.0.0.1:PROXY/cam1
    proxy.dropped, proxy.reordered, proxy.forwarded
    proxy.stop()

With ``require_keepalive=T`` it is also a camera that drops a session without keep-alives:
once PLAY has gone through, a client that sends no RTSP request for ``T`` seconds has its
connection closed (``proxy.closed_idle`` counts it), as such cameras do.

With ``redirect=URL`` it answers every DESCRIBE with ``302`` to that URL (a camera moved to
another address or a relay), and forwards nothing.

The client's SETUP ``client_port=a-b`` is rewritten to the proxy's own pair, so the camera
(GStreamer's server) sends RTP to the proxy, which forwards to a (lossy) and b (RTCP,
as is). Everything else passes unchanged. Seeded, so a run is repeatable.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading

HOST = "127.0.0.1"


class _Forward(asyncio.DatagramProtocol):
    def __init__(self, proxy: "LossyRtspProxy", target: tuple[str, int], lossy: bool) -> None:
        self.proxy, self.target, self.lossy = proxy, target, lossy
        self.transport: asyncio.DatagramTransport | None = None
        self.held: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        p = self.proxy
        if not self.lossy:
            self.transport.sendto(data, self.target)
            return
        r = p.rng.random()
        if r < p.loss:
            p.dropped += 1
            return
        if self.held is None and r < p.loss + p.reorder:
            self.held = data  # sent after the next one
            p.reordered += 1
            return
        self.transport.sendto(data, self.target)
        p.forwarded += 1
        if self.held is not None:
            self.transport.sendto(self.held, self.target)
            p.forwarded += 1
            self.held = None


class LossyRtspProxy:
    def __init__(self, host: str, upstream_port: int, *, loss: float = 0.01, reorder: float = 0.01,
                 seed: int = 1, require_keepalive: float | None = None, redirect: str | None = None) -> None:
        self.redirect = redirect
        self.redirected = 0
        self.require_keepalive = require_keepalive
        self.closed_idle = 0
        self.upstream = (host, upstream_port)
        self.loss, self.reorder = loss, reorder
        self.rng = random.Random(seed)
        self.dropped = self.reordered = self.forwarded = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def url(self, path: str) -> str:
        return f"rtsp://{HOST}:{self.port}{path}"

    def start(self) -> "LossyRtspProxy":
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, HOST, 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _pair(self, rtp_to: tuple[str, int], rtcp_to: tuple[str, int]) -> int:
        loop = asyncio.get_running_loop()
        for _ in range(50):
            t, _p = await loop.create_datagram_endpoint(lambda: _Forward(self, rtp_to, True), local_addr=(HOST, 0))
            port = t.get_extra_info("sockname")[1]
            if port % 2 == 0:
                try:
                    await loop.create_datagram_endpoint(lambda: _Forward(self, rtcp_to, False),
                                                        local_addr=(HOST, port + 1))
                    return int(port)
                except OSError:
                    pass
            t.close()
        raise OSError("no even/odd UDP port pair for the proxy")

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        task = asyncio.ensure_future(downstream())
        playing = False
        try:
            while True:
                if playing and self.require_keepalive is not None:
                    try:
                        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.require_keepalive)
                    except asyncio.TimeoutError:
                        self.closed_idle += 1
                        break
                else:
                    head = await reader.readuntil(b"\r\n\r\n")
                text = head.decode("latin-1")
                playing = playing or text.startswith("PLAY")
                if self.redirect is not None and text.startswith("DESCRIBE"):
                    cseq = re.search(r"(?im)^cseq:\s*(\d+)", text)
                    writer.write(f"RTSP/1.0 302 Moved Temporarily\r\nCSeq: {cseq.group(1) if cseq else 0}\r\n"
                                 f"Location: {self.redirect}\r\n\r\n".encode())
                    await writer.drain()
                    self.redirected += 1
                    continue
                m = re.search(r"client_port=(\d+)-(\d+)", text)
                if m and text.startswith("SETUP"):
                    a, b = int(m.group(1)), int(m.group(2))
                    mine = await self._pair((HOST, a), (HOST, b))
                    text = text.replace(m.group(0), f"client_port={mine}-{mine + 1}")
                body = b""
                cl = re.search(r"(?im)^content-length:\s*(\d+)", text)
                if cl and int(cl.group(1)):
                    body = await reader.readexactly(int(cl.group(1)))
                up_writer.write(text.encode("latin-1") + body)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            up_writer.close()
            task.cancel()
            writer.close()
