"""Dialogs (RFC 3261 section 12): what an INVITE's 2xx sets up, and the requests inside it.

A ``Dialog`` is created by ``SipEndpoint.invite`` (we are the caller: UAC) or by
``Incoming.accept`` (an INVITE to us: UAS). It keeps the Call-ID, both tags, our CSeq
counter, the remote target (the peer's Contact) and the route set, and sends ACK, BYE
and other in-dialog requests (INFO for playback control, for instance). Requests go to
the ``peer`` address the dialog was made with, not to the Contact host: behind NAT the
Contact is a private address; the Request-URI still names the Contact, as RFC 3261 says.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

from ingest.gb28181.sip.message import SipRequest, SipResponse
from ingest.gb28181.sip.transport import Peer

if TYPE_CHECKING:
    from ingest.gb28181.sip.endpoint import SipEndpoint

DialogKey = tuple[str, str, str]  # (call-id, local tag, remote tag)


@dataclass(eq=False)
class Dialog:
    endpoint: "SipEndpoint"
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str        # our From (UAC) / To (UAS) URI, without tag
    remote_uri: str
    remote_target: str    # the peer's Contact URI
    peer: Peer
    local_seq: int
    route_set: list[str] = field(default_factory=list)
    # The INVITE's 200 OK (UAC) or the INVITE itself (UAS): its SDP.
    remote_sdp: bytes = b""
    # Set when either side ends the dialog; ``end_reason`` says how.
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = ""
    # Called for requests the peer sends inside the dialog (BYE is answered for you first).
    on_request: Callable[[SipRequest], Awaitable[None] | None] | None = None
    _invite_cseq: int = 0

    @property
    def key(self) -> DialogKey:
        return self.call_id, self.local_tag, self.remote_tag

    def _build(self, method: str, cseq: int | None = None) -> SipRequest:
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        req = SipRequest(method=method, uri=self.remote_target)
        req.add("From", f"<{self.local_uri}>;tag={self.local_tag}")
        req.add("To", f"<{self.remote_uri}>;tag={self.remote_tag}")
        req.add("Call-ID", self.call_id)
        req.add("CSeq", f"{cseq} {method}")
        for route in self.route_set:
            req.add("Route", route)
        return req

    async def ack(self) -> None:
        """ACK the INVITE's 2xx (a new transaction-less request; sent again if the 2xx is)."""
        ack = self._build("ACK", cseq=self._invite_cseq)
        await self.endpoint.send_stateless(ack, self.peer)

    async def request(self, method: str, *, body: bytes = b"", content_type: str | None = None,
                      headers: list[tuple[str, str]] | None = None, timeout: float | None = None) -> SipResponse:
        """Send ``method`` inside the dialog and return the final response."""
        req = self._build(method)
        for k, v in headers or []:
            req.add(k, v)
        if content_type:
            req.add("Content-Type", content_type)
        req.body = body
        return await self.endpoint.send_request(req, self.peer, timeout=timeout)

    async def bye(self, reason: str = "local BYE") -> SipResponse | None:
        """End the dialog. Returns the BYE's response (None when it had already ended)."""
        if self.ended.is_set():
            return None
        self.end(reason)
        return await self.request("BYE")

    def end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.end_reason = reason
            self.ended.set()
            self.endpoint.forget_dialog(self)
