"""``SipEndpoint``: one SIP user agent (UDP + TCP) with transactions, dialogs and handlers.

This is the API the GB/T 28181 device layer and the media (INVITE) layer build on::

    ep = SipEndpoint(user="34020000002000000001", domain="3402000000", host="0.0.0.0", port=5060,
                     advertise_host="192.0.2.10")
    await ep.start()

    # Incoming requests: one handler per method, returning the response to send.
    async def on_message(inc: Incoming) -> SipResponse:
        ...inc.request, inc.peer...
        return inc.response(200)
    ep.on("MESSAGE", on_message)

    # Outgoing requests: returns the final response (a synthetic 408 on timeout,
    # 503 on a transport error); 401/407 are answered once with ``credentials``.
    peer = Peer("UDP", "198.51.100.7", 5060)
    resp = await ep.request("MESSAGE", peer, "sip:34020000001320000001@3402000000",
                            body=xml, content_type="Application/MANSCDP+xml")

    # INVITE: a dialog on 2xx (ACK sent for you, and again if the 2xx is repeated).
    result = await ep.invite(peer, "sip:34020000001320000001@3402000000", sdp=offer,
                             subject="34020000001320000001:0200000001,34020000002000000001:0")
    if result.dialog is not None:
        answer_sdp = result.response.body
        ...
        await result.dialog.ended.wait()     # the device sent BYE (dialog.end_reason says so)
        await result.dialog.bye()            # or we end it

    # An INVITE to us (cascade): ``inc.accept(sdp)`` answers 200 and returns the Dialog.

Requests go to ``peer`` (the address a device's REGISTER came from), not to the host in its
Contact: behind NAT that is the only address that works. Responses always go back to the
source address of the request (RFC 3581 behaviour, also for devices that did not ask for
``rport``), and the top Via gets ``received``/``rport`` so the sender can see its public
address. Messages that fail to parse go to ``on_reject(peer, reason)``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Coroutine

from ingest.gb28181.sip.dialog import Dialog, DialogKey
from ingest.gb28181.sip.digest import authorization_for, parse_digest
from ingest.gb28181.sip.message import (
    NameAddr, SipMessage, SipRequest, SipResponse, SipUri, Via, response_to,
)
from ingest.gb28181.sip.transaction import ClientTransaction, ServerTransaction, Timers
from ingest.gb28181.sip.transport import Peer, TcpTransport, UdpTransport

log = logging.getLogger(__name__)

MAX_SERVER_TRANSACTIONS = 20_000
MAX_DIALOGS = 20_000


def random_token(n: int = 8) -> str:
    return os.urandom(n).hex()


def new_branch() -> str:
    return "z9hG4bK" + random_token(8)


@dataclass(frozen=True)
class Credentials:
    """What we answer a digest challenge with (client side)."""

    username: str
    password: str


@dataclass
class InviteResult:
    response: SipResponse
    dialog: Dialog | None


@dataclass
class Incoming:
    """A request handed to a handler. Build the answer with ``response`` (or ``accept`` for INVITE)."""

    request: SipRequest
    peer: Peer
    endpoint: "SipEndpoint"
    dialog: Dialog | None = None  # set for a request inside a dialog we know
    local_tag: str = field(default_factory=random_token)

    def response(self, status: int, reason: str | None = None, *, headers: list[tuple[str, str]] | None = None,
                 body: bytes = b"", content_type: str | None = None) -> SipResponse:
        extra = list(headers or [])
        if content_type and body:
            extra.append(("Content-Type", content_type))
        resp = response_to(self.request, status, reason, to_tag=self.local_tag, headers=extra, body=body)
        resp.add("User-Agent", self.endpoint.user_agent)
        return resp

    def accept(self, sdp: bytes, *, headers: list[tuple[str, str]] | None = None) -> tuple[SipResponse, Dialog]:
        """Answer an INVITE with 200 and ``sdp``; the dialog is live once the response is sent."""
        req = self.request
        resp = self.response(200, headers=[("Contact", self.endpoint.contact(self.peer.transport)),
                                           *(headers or [])], body=sdp, content_type="application/sdp")
        remote = req.from_
        dialog = Dialog(
            endpoint=self.endpoint, call_id=req.call_id, local_tag=self.local_tag, remote_tag=remote.tag,
            local_uri=req.to.uri, remote_uri=remote.uri,
            remote_target=NameAddr.parse(req.get("Contact") or "").uri or remote.uri, peer=self.peer,
            local_seq=0, route_set=req.get_all("Record-Route"), remote_sdp=req.body,
        )
        self.endpoint.remember_dialog(dialog)
        return resp, dialog


Handler = Callable[[Incoming], Awaitable[SipResponse]]
Reject = Callable[[Peer, str], None]


class SipEndpoint:
    def __init__(self, *, user: str, domain: str, host: str = "0.0.0.0", port: int = 5060,
                 advertise_host: str | None = None, timers: Timers = Timers(), user_agent: str = "sharpeyes",
                 udp: bool = True, tcp: bool = True) -> None:
        self.user, self.domain = user, domain
        self.host, self.port = host, port
        self.advertise_host = advertise_host
        self.timers = timers
        self.user_agent = user_agent
        self.on_reject: Reject | None = None
        self._handlers: dict[str, Handler] = {}
        self._udp = UdpTransport(self._deliver, self._reject) if udp else None
        self._tcp = TcpTransport(self._deliver, self._reject) if tcp else None
        self._client: dict[tuple[str, str], ClientTransaction] = {}
        self._server: dict[tuple[str, ...], ServerTransaction] = {}
        self._invites: dict[tuple[str, int], ServerTransaction] = {}  # (call-id, cseq) -> for ACK
        self._dialogs: dict[DialogKey, Dialog] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters: dict[str, int] = {"received": 0, "rejected": 0, "retransmissions_absorbed": 0,
                                         "handler_errors": 0, "overload": 0}

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Bind UDP and TCP on host:port (port 0: one free port, the same for both)."""
        requested = self.port
        # With port 0 the UDP port is free, but the same TCP port may not be: another socket can
        # hold it. Pick again rather than fail (a fixed port that is taken still fails).
        for attempt in range(1, 21):
            if self._udp is not None:
                self.host, self.port = await self._udp.start(self.host, requested)
            if self._tcp is None:
                break
            try:
                _, self.port = await self._tcp.start(self.host, self.port)
                break
            except OSError as exc:
                if self._udp is not None:
                    self._udp.close()
                if requested != 0 or self._udp is None or exc.errno != errno.EADDRINUSE or attempt == 20:
                    raise
        if self.advertise_host is None:
            self.advertise_host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        log.info("SIP endpoint %s on %s:%d (udp=%s tcp=%s)", self.user, self.host, self.port,
                 self._udp is not None, self._tcp is not None)

    async def close(self) -> None:
        for tx in list(self._client.values()):
            tx.cancel()
        for stx in list(self._server.values()):
            stx.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            await self._tcp.close()

    def on(self, method: str, handler: Handler) -> None:
        """Handle incoming ``method`` requests (one handler per method; a later one replaces it)."""
        self._handlers[method.upper()] = handler

    def contact(self, transport: str = "UDP") -> str:
        suffix = "" if transport.upper() == "UDP" else ";transport=tcp"
        return f"<sip:{self.user}@{self.advertise_host}:{self.port}{suffix}>"

    @property
    def local_uri(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    # -- sending ------------------------------------------------------------------------

    async def _send(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "TCP":
            if self._tcp is None:
                raise ConnectionError("TCP is not enabled on this SIP endpoint")
            await self._tcp.send(data, peer)
        else:
            if self._udp is None:
                raise ConnectionError("UDP is not enabled on this SIP endpoint")
            self._udp.send(data, peer)

    def _stamp(self, req: SipRequest, peer: Peer) -> None:
        req.remove("Via")
        req.add("Via", f"SIP/2.0/{peer.transport} {self.advertise_host}:{self.port};rport;branch={new_branch()}",
                first=True)
        if req.get("Max-Forwards") is None:
            req.add("Max-Forwards", "70")
        if req.get("User-Agent") is None:
            req.add("User-Agent", self.user_agent)

    async def send_stateless(self, req: SipRequest, peer: Peer) -> None:
        """Send a request without a transaction (ACK for a 2xx)."""
        self._stamp(req, peer)
        await self._send(req.to_bytes(), peer)

    async def send_request(self, req: SipRequest, peer: Peer, *, timeout: float | None = None,
                           credentials: Credentials | None = None) -> SipResponse:
        """Send a fully built request in a client transaction; return its final response.

        With ``credentials``, a 401/407 is answered once per challenge (again only when the
        server says ``stale=true``), so a wrong password ends in the 401, not in a loop."""
        answered = 0
        while True:
            self._stamp(req, peer)
            tx = ClientTransaction(req, peer, self._send, self.timers, timeout)
            self._client[tx.key] = tx
            tx.start()
            try:
                resp = await tx.result
            finally:
                self._client.pop(tx.key, None)
            if resp.status not in (401, 407) or credentials is None:
                return resp
            challenge = resp.get("WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate") or ""
            stale = parse_digest(challenge).get("stale", "").lower() == "true"
            if answered and not stale:
                return resp
            answered += 1
            if answered > 3:
                return resp
            header = "Authorization" if resp.status == 401 else "Proxy-Authorization"
            req.set(header, authorization_for(challenge, username=credentials.username,
                                              password=credentials.password, method=req.method, uri=req.uri))
            number, method = req.cseq
            req.set("CSeq", f"{number + 1} {method}")

    def new_call_id(self) -> str:
        return f"{random_token(12)}@{self.advertise_host}"

    def new_request(self, method: str, uri: str, *, to_uri: str | None = None, from_uri: str | None = None,
                    call_id: str | None = None, cseq: int = 1, transport: str = "UDP") -> SipRequest:
        """An out-of-dialog request from us: From with a fresh tag, a new Call-ID (unless
        ``call_id``: a REGISTER refresh keeps its registration's), CSeq ``cseq``."""
        req = SipRequest(method=method.upper(), uri=uri)
        req.add("From", f"<{from_uri or self.local_uri}>;tag={random_token()}")
        req.add("To", f"<{to_uri or uri}>")
        req.add("Call-ID", call_id or self.new_call_id())
        req.add("CSeq", f"{cseq} {method.upper()}")
        if method.upper() in ("INVITE", "REGISTER", "SUBSCRIBE"):
            req.add("Contact", self.contact(transport))
        return req

    async def request(self, method: str, peer: Peer, uri: str, *, to_uri: str | None = None,
                      from_uri: str | None = None, body: bytes = b"", content_type: str | None = None,
                      headers: list[tuple[str, str]] | None = None, credentials: Credentials | None = None,
                      call_id: str | None = None, cseq: int = 1, timeout: float | None = None) -> SipResponse:
        """Send an out-of-dialog request and return its final response."""
        req = self.new_request(method, uri, to_uri=to_uri, from_uri=from_uri, call_id=call_id, cseq=cseq,
                               transport=peer.transport)
        for k, v in headers or []:
            req.add(k, v)
        if content_type:
            req.add("Content-Type", content_type)
        req.body = body
        return await self.send_request(req, peer, timeout=timeout, credentials=credentials)

    async def invite(self, peer: Peer, uri: str, *, sdp: bytes, to_uri: str | None = None,
                     subject: str | None = None, headers: list[tuple[str, str]] | None = None,
                     credentials: Credentials | None = None, timeout: float | None = None) -> InviteResult:
        """INVITE with an SDP offer. On 2xx the ACK is sent and a ``Dialog`` returned."""
        extra = list(headers or [])
        if subject:
            extra.append(("Subject", subject))
        req = self.new_request("INVITE", uri, to_uri=to_uri, transport=peer.transport)
        for k, v in extra:
            req.add(k, v)
        req.add("Content-Type", "application/sdp")
        req.body = sdp
        resp = await self.send_request(req, peer, timeout=timeout, credentials=credentials)
        if not 200 <= resp.status < 300:
            return InviteResult(resp, None)
        to = resp.to
        dialog = Dialog(
            endpoint=self, call_id=req.call_id, local_tag=req.from_.tag, remote_tag=to.tag,
            local_uri=req.from_.uri, remote_uri=to.uri,
            remote_target=NameAddr.parse(resp.get("Contact") or "").uri or uri, peer=peer,
            local_seq=req.cseq[0], route_set=list(reversed(resp.get_all("Record-Route"))), remote_sdp=resp.body,
            _invite_cseq=req.cseq[0],
        )
        self.remember_dialog(dialog)
        await dialog.ack()
        return InviteResult(resp, dialog)

    # -- dialogs -----------------------------------------------------------------------

    def remember_dialog(self, dialog: Dialog) -> None:
        if len(self._dialogs) >= MAX_DIALOGS:
            raise RuntimeError(f"more than {MAX_DIALOGS} SIP dialogs; refusing a new one")
        self._dialogs[dialog.key] = dialog

    def forget_dialog(self, dialog: Dialog) -> None:
        self._dialogs.pop(dialog.key, None)

    @property
    def dialogs(self) -> list[Dialog]:
        return list(self._dialogs.values())

    # -- receiving ---------------------------------------------------------------------

    def _reject(self, peer: Peer, reason: str) -> None:
        self.counters["rejected"] += 1
        log.warning("SIP from %s refused: %s", peer, reason)
        if self.on_reject is not None:
            try:
                self.on_reject(peer, reason)
            except Exception:  # noqa: BLE001 - a status hook must not break the transport
                log.exception("on_reject hook failed")

    def _deliver(self, message: SipMessage, peer: Peer) -> None:
        self.counters["received"] += 1
        if isinstance(message, SipResponse):
            self._on_response(message, peer)
        elif isinstance(message, SipRequest):
            self._on_request(message, peer)

    def _on_response(self, resp: SipResponse, peer: Peer) -> None:
        vias = resp.vias
        if not vias:
            return
        tx = self._client.get((vias[0].branch, resp.cseq[1]))
        if tx is not None:
            tx.receive(resp)
            return
        if resp.cseq[1] == "INVITE" and 200 <= resp.status < 300:
            # A repeated 2xx: our ACK was lost. ACK again (RFC 3261 13.2.2.4).
            dialog = self._dialogs.get((resp.call_id, resp.from_.tag, resp.to.tag))
            if dialog is not None:
                self._spawn(dialog.ack())

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_request(self, req: SipRequest, peer: Peer) -> None:
        vias = req.vias
        if not vias:
            return
        top = vias[0]
        _mark_received(req, top, peer)
        if req.method == "ACK":
            stx = self._invites.get((req.call_id, req.cseq[0]))
            if stx is not None:
                stx.acked.set()
            return
        key = _server_key(req, top)
        existing = self._server.get(key)
        if existing is not None:
            self.counters["retransmissions_absorbed"] += 1
            self._spawn(existing.retransmitted())
            return
        stx = ServerTransaction(req, peer, self._send, self.timers)
        if len(self._server) >= MAX_SERVER_TRANSACTIONS:
            self.counters["overload"] += 1
            self._spawn(stx.respond(response_to(req, 503, headers=[("Retry-After", "5")])))
            return
        self._server[key] = stx
        linger = self.timers.timeout if peer.transport == "UDP" else self.timers.t4
        asyncio.get_running_loop().call_later(linger + self.timers.timeout, self._server.pop, key, None)
        if req.method == "INVITE":
            self._invites[(req.call_id, req.cseq[0])] = stx
            asyncio.get_running_loop().call_later(2 * self.timers.timeout, self._invites.pop,
                                                  (req.call_id, req.cseq[0]), None)
        self._spawn(self._handle(req, peer, stx))

    async def _handle(self, req: SipRequest, peer: Peer, stx: ServerTransaction) -> None:
        inc = Incoming(req, peer, self)
        to_tag = req.to.tag
        try:
            if req.method == "INVITE" and not to_tag:
                await stx.respond(response_to(req, 100))
            if to_tag:
                dialog = self._dialogs.get((req.call_id, to_tag, req.from_.tag))
                inc.dialog = dialog
                inc.local_tag = to_tag
                if dialog is None and req.method in ("BYE", "INFO", "CANCEL") or (
                        dialog is None and req.method == "INVITE"):
                    await stx.respond(inc.response(481))
                    return
                if dialog is not None:
                    if req.method == "BYE":
                        dialog.end("remote BYE")
                    if dialog.on_request is not None:
                        maybe = dialog.on_request(req)
                        if maybe is not None:
                            await maybe
                    if req.method not in self._handlers or req.method == "BYE":
                        await stx.respond(inc.response(200))
                        return
            handler = self._handlers.get(req.method)
            if handler is None:
                if req.method == "OPTIONS":
                    resp = inc.response(200, headers=[("Allow", ", ".join(sorted({"ACK", "BYE", "OPTIONS",
                                                                                    *self._handlers})))])
                else:
                    resp = inc.response(405, headers=[("Allow", ", ".join(sorted({"ACK", "BYE", "OPTIONS",
                                                                                    *self._handlers})))])
            else:
                resp = await handler(inc)
            await stx.respond(resp)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the endpoint down
            self.counters["handler_errors"] += 1
            log.exception("SIP %s from %s: handler failed", req.method, peer)
            try:
                await stx.respond(inc.response(500, f"Server Internal Error ({type(exc).__name__})"))
            except (ConnectionError, OSError):
                pass


def _server_key(req: SipRequest, top: Via) -> tuple[str, ...]:
    if top.branch.startswith("z9hG4bK"):
        return top.branch, top.host, str(top.port), req.method
    # RFC 2543 peers: no magic cookie; match on the request's identity instead (17.2.3).
    return req.call_id, str(req.cseq[0]), req.from_.tag, req.method


def _mark_received(req: SipRequest, top: Via, peer: Peer) -> None:
    """RFC 3581: tell the sender the address we saw (``received``/``rport``)."""
    changed = False
    if top.host != peer.host:
        top.params["received"] = peer.host
        changed = True
    if "rport" in top.params:
        top.params["rport"] = str(peer.port)
        top.params.setdefault("received", peer.host)
        changed = True
    if not changed:
        return
    for i, (k, v) in enumerate(req.headers):
        if k == "Via":
            first, sep, rest = _split_first(v)
            req.headers[i] = (k, str(top) + (sep + rest if sep else ""))
            return


def _split_first(value: str) -> tuple[str, str, str]:
    from ingest.gb28181.sip.message import split_commas

    parts = split_commas(value)
    if len(parts) <= 1:
        return value, "", ""
    return parts[0], ", ", ", ".join(parts[1:])


__all__ = ["Credentials", "Dialog", "Incoming", "InviteResult", "Peer", "SipEndpoint", "SipRequest",
           "SipResponse", "SipUri", "Timers"]
