"""Client and server transactions (RFC 3261 section 17) with T1/T2 retransmission.

``ClientTransaction``: sends a request, retransmits it over UDP (INVITE: timer A, doubling
from T1; others: timer E, doubling from T1 up to T2, and T2 once a provisional arrived) and
gives up after 64*T1 (timers B/F) with a synthetic 408. Its ``result`` future holds the final
response. A non-2xx final response to an INVITE is ACKed here, in the same transaction.

``ServerTransaction``: remembers the final response to a request, so a retransmitted
request is answered again without the handler running twice. For an INVITE the final
response is resent (timer G) until the ACK arrives or 64*T1 passes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

from ingest.gb28181.sip.message import SipRequest, SipResponse, response_to
from ingest.gb28181.sip.transport import Peer

Send = Callable[[bytes, Peer], Awaitable[None]]


@dataclass(frozen=True)
class Timers:
    """RFC 3261 timer values in seconds; tests shrink T1."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timeout(self) -> float:
        return 64 * self.t1


class ClientTransaction:
    def __init__(self, request: SipRequest, peer: Peer, send: Send, timers: Timers,
                 timeout: float | None = None) -> None:
        self.request, self.peer, self._send, self.timers = request, peer, send, timers
        self.branch = request.vias[0].branch
        self.method = request.method
        self.result: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self.provisional: SipResponse | None = None
        self._timeout = timeout if timeout is not None else timers.timeout
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    @property
    def key(self) -> tuple[str, str]:
        return self.branch, self.method

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        data = self.request.to_bytes()
        reliable = self.peer.transport != "UDP"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        interval = self.timers.t1
        try:
            while not self.result.done():
                await self._send(data, self.peer)
                self.sent += 1
                wait = deadline - loop.time() if reliable else min(interval, deadline - loop.time())
                if wait <= 0:
                    break
                try:
                    await asyncio.wait_for(asyncio.shield(self.result), wait)
                    return
                except asyncio.TimeoutError:
                    pass
                if loop.time() >= deadline:
                    break
                if self.method == "INVITE":
                    if self.provisional is not None:
                        # Timer A stops at the first provisional; only timer B runs on.
                        await asyncio.wait_for(asyncio.shield(self.result), max(0.0, deadline - loop.time()))
                        return
                    interval *= 2
                else:
                    interval = self.timers.t2 if self.provisional is not None else min(interval * 2, self.timers.t2)
        except asyncio.TimeoutError:
            pass
        except (ConnectionError, OSError) as exc:
            self._finish(_synthetic(self.request, 503, f"Transport Error ({exc})"))
            return
        self._finish(_synthetic(self.request, 408, "Request Timeout (no final response)"))

    def receive(self, response: SipResponse) -> None:
        if response.status < 200:
            self.provisional = response
            return
        if self.method == "INVITE" and response.status >= 300:
            # ACK for a non-2xx final response belongs to the INVITE transaction (17.1.1.3).
            asyncio.get_running_loop().create_task(self._ack_failure(response))
        self._finish(response)

    async def _ack_failure(self, response: SipResponse) -> None:
        ack = SipRequest(method="ACK", uri=self.request.uri)
        ack.headers = [(k, v) for k, v in self.request.headers if k in ("Via", "From", "Call-ID", "Route",
                                                                       "Max-Forwards")]
        ack.add("To", response.get("To") or "")
        ack.add("CSeq", f"{self.request.cseq[0]} ACK")
        try:
            await self._send(ack.to_bytes(), self.peer)
        except (ConnectionError, OSError):
            pass

    def _finish(self, response: SipResponse) -> None:
        if not self.result.done():
            self.result.set_result(response)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _synthetic(request: SipRequest, status: int, reason: str) -> SipResponse:
    resp = response_to(request, status, reason)
    resp.add("Warning", '399 sharpeyes "generated locally"')
    return resp


class ServerTransaction:
    """A request being (or having been) answered. ``respond`` sends and remembers the answer."""

    def __init__(self, request: SipRequest, peer: Peer, send: Send, timers: Timers) -> None:
        self.request, self.peer, self._send, self.timers = request, peer, send, timers
        self.final: SipResponse | None = None
        self.provisional: SipResponse | None = None
        self.acked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def respond(self, response: SipResponse) -> None:
        if response.status < 200:
            self.provisional = response
        else:
            self.final = response
        await self._send(response.to_bytes(), self.peer)
        if self.request.method == "INVITE" and response.status >= 200 and self.peer.transport == "UDP":
            self._task = asyncio.get_running_loop().create_task(self._resend_until_ack(response))

    async def _resend_until_ack(self, response: SipResponse) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timers.timeout
        interval = self.timers.t1
        data = response.to_bytes()
        while loop.time() < deadline:
            try:
                await asyncio.wait_for(self.acked.wait(), min(interval, deadline - loop.time()))
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self._send(data, self.peer)
            except (ConnectionError, OSError):
                return
            interval = min(interval * 2, self.timers.t2)

    async def retransmitted(self) -> None:
        """The same request came again: answer with what we last sent (nothing yet: nothing)."""
        last = self.final or self.provisional
        if last is not None:
            await self._send(last.to_bytes(), self.peer)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
