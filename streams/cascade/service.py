"""``CascadeService``: we are a lower platform of each configured upper platform (``gb upstream add``).

On the GB/T 28181 SIP server's loop, for every row of ``UpstreamStore``:
- **REGISTER** to it (``sip:ID@DOMAIN``) with MD5 digest (user: our ``GB_ID``), ``Expires: 3600``,
  refreshed at half-time; a refusal is retried with backoff (never a 401 loop: the endpoint
  answers one challenge per request), and the state and reason are written to its row.
- **Keepalive** MESSAGEs (``Notify/Keepalive``) every ``keepalive_s``.
- Its **Catalog** query (a MESSAGE from its id) is answered 200, then with ``Response/Catalog``
  MESSAGEs listing the cameras of its regions (and their sub-regions) that have 20-digit ids,
  ``SumNum`` in each, up to ``CATALOG_BATCH`` items a MESSAGE, in the encoding it asked in
  (GB2312/GB18030 or UTF-8).
- Its **INVITE s=Play** for one of those cameras is answered with our SDP and PS over RTP from
  the camera's live hub (``PsRtpSender``: UDP; TCP where we connect if it offered
  ``a=setup:passive``, or listen if ``a=setup:active``); BYE ends it. ``s=Playback`` (from our
  archive) is not served yet: 488 with the reason.
- Every cascade session (accepted or refused) is an audit row (``gb_cascade``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from lxml import etree

from config.cameras import Camera
from ingest.gb28181.manscdp import MANSCDP_TYPE, ManscdpError, read_body
from ingest.gb28181.media.receiver import PortPool
from ingest.gb28181.sip import Credentials, Dialog, Incoming, Peer, SipEndpoint, SipResponse
from ingest.live.hub import LiveHubs
from storage.index.gb_upstreams import Upstream, UpstreamStore
from storage.index.registry import Registry
from streams.cascade.sender import PsRtpSender

log = logging.getLogger(__name__)

CATALOG_BATCH = 20
Audit = Callable[[str, str, str, str], None]  # (upstream id, outcome, camera id, detail)


def _subregions(registry: Registry, codes: list[str]) -> set[str]:
    regions = registry.regions()
    wanted = set(codes)
    changed = True
    while changed:
        changed = False
        for r in regions:
            if r.parent in wanted and r.code not in wanted:
                wanted.add(r.code)
                changed = True
    return wanted


def cascade_cameras(registry: Registry, upstream: Upstream) -> list[Camera]:
    """The cameras an upper platform gets: in its regions (with sub-regions), with 20-digit ids."""
    regions = _subregions(registry, upstream.regions)
    return [c for c in registry.cameras() if c.region in regions and len(c.id) == 20 and c.id.isdigit()]


def catalog_bodies(our_id: str, sn: str, cameras: list[Camera], encoding: str) -> list[bytes]:
    """``Response/Catalog`` bodies, ``CATALOG_BATCH`` items each, every one with the full SumNum."""
    declared, codec = ("UTF-8", "utf-8") if encoding == "utf-8" else ("GB2312", "gb18030")
    batches = [cameras[i : i + CATALOG_BATCH] for i in range(0, len(cameras), CATALOG_BATCH)] or [[]]
    out = []
    for batch in batches:
        root = etree.Element("Response")
        for tag, value in (("CmdType", "Catalog"), ("SN", sn), ("DeviceID", our_id), ("SumNum", str(len(cameras)))):
            etree.SubElement(root, tag).text = value
        items = etree.SubElement(root, "DeviceList", Num=str(len(batch)))
        for cam in batch:
            item = etree.SubElement(items, "Item")
            for tag, value in (("DeviceID", cam.id), ("Name", cam.name), ("Manufacturer", "sharpeyes"),
                               ("Model", "county platform"), ("Owner", "sharpeyes"), ("CivilCode", cam.region),
                               ("Address", ""), ("Parental", "0"), ("ParentID", our_id), ("SafetyWay", "0"),
                               ("RegisterWay", "1"), ("Secrecy", "0"), ("Status", "ON" if cam.enabled else "OFF")):
                etree.SubElement(item, tag).text = value
        text = etree.tostring(root, pretty_print=True, encoding="unicode")
        out.append(f'<?xml version="1.0" encoding="{declared}"?>\r\n{text}'.encode(codec))
    return out


def _sdp_fields(body: bytes) -> dict[str, Any]:
    host, port, tcp, setup, ssrc, session = "", 0, False, "", 0, ""
    for raw in body.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("c=") and not host:
            parts = line[2:].split()
            host = parts[2] if len(parts) >= 3 else ""
        elif line.startswith("m=video"):
            parts = line.split()
            port = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            tcp = len(parts) > 2 and parts[2].upper().startswith("TCP")
        elif line.startswith("a=setup:"):
            setup = line[8:].strip().lower()
        elif line.startswith("y="):
            ssrc = int(line[2:].strip()) if line[2:].strip().isdigit() else 0
        elif line.startswith("s="):
            session = line[2:].strip()
    return {"host": host, "port": port, "tcp": tcp, "setup": setup, "ssrc": ssrc, "session": session}


@dataclass
class CascadeSession:
    upstream: str
    camera_id: str
    sender: PsRtpSender
    dialog: Dialog


@dataclass
class _Link:
    upstream: Upstream
    password: str
    peer: Peer
    call_id: str = ""
    registered: bool = False
    task: asyncio.Task[None] | None = None


@dataclass
class CascadeService:
    endpoint: SipEndpoint
    store: UpstreamStore
    registry: Registry
    hubs: LiveHubs
    our_id: str
    media_host: str
    ports: PortPool
    audit: Audit = lambda upstream, outcome, camera, detail: None
    keepalive_s: float = 60.0
    expires_s: int = 3600
    retry_s: float = 10.0
    bind_host: str = "0.0.0.0"
    links: dict[str, _Link] = field(default_factory=dict)
    sessions: list[CascadeSession] = field(default_factory=list)
    _sn: Any = field(default_factory=lambda: itertools.count(1))

    # -- life cycle ------------------------------------------------------------------

    def start(self, message_routes: dict[str, Callable[[Incoming], Any]]) -> None:
        """Start on the SIP loop: one task per upper platform; ``message_routes`` is the device
        service's table of MESSAGE handlers by sender id (upper platforms are no devices)."""
        self.endpoint.on("INVITE", self._on_invite)
        for up in self.store.all():
            peer = Peer("TCP" if up.transport == "tcp" else "UDP", up.host, up.port)
            link = self.links[up.platform_id] = _Link(up, self.store.password(up.platform_id), peer)
            message_routes[up.platform_id] = self._on_message
            link.task = asyncio.get_running_loop().create_task(self._keep_registered(link))

    async def close(self) -> None:
        for s in self.sessions:
            s.sender.stop(self.hubs.loop or asyncio.get_running_loop())
            if not s.dialog.ended.is_set():
                try:
                    await s.dialog.bye("platform stopping")
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
        for link in self.links.values():
            if link.task is not None:
                link.task.cancel()

    # -- registration and keepalive ---------------------------------------------------

    async def _register(self, link: _Link, expires: int) -> SipResponse:
        up = link.upstream
        local = f"sip:{self.our_id}@{self.our_id[:10]}"
        return await self.endpoint.request(
            "REGISTER", link.peer, f"sip:{up.platform_id}@{up.domain}", to_uri=local, from_uri=local,
            headers=[("Expires", str(expires))], credentials=Credentials(self.our_id, link.password),
            call_id=link.call_id or None)

    async def _keep_registered(self, link: _Link) -> None:
        up = link.upstream
        loop = asyncio.get_running_loop()
        next_register = 0.0
        attempt = 0
        while True:
            now = loop.time()
            if now >= next_register:
                resp = await self._register(link, self.expires_s)
                if 200 <= resp.status < 300:
                    if not link.registered:
                        log.info("cascade: registered to %s at %s", up.platform_id, link.peer)
                    link.registered, attempt = True, 0
                    next_register = now + self.expires_s / 2
                    await asyncio.to_thread(self.store.set_state, up.platform_id, "registered",
                                            f"registered (expires {self.expires_s} s)", True)
                else:
                    link.registered = False
                    attempt += 1
                    wait = min(300.0, self.retry_s * 2 ** min(attempt - 1, 5))
                    next_register = now + wait
                    reason = (f"REGISTER answered {resp.status} {resp.reason}" +
                              ("; check the password and our GB_ID" if resp.status in (401, 403) else ""))
                    log.warning("cascade to %s: %s; again in %.0f s", up.platform_id, reason, wait)
                    await asyncio.to_thread(self.store.set_state, up.platform_id, "failed", reason)
            if link.registered:
                await self._keepalive(link)
            await asyncio.sleep(max(0.05, min(self.keepalive_s, next_register - loop.time())))

    async def _keepalive(self, link: _Link) -> None:
        up = link.upstream
        body = (f'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n'
                f"<SN>{next(self._sn)}</SN>\r\n<DeviceID>{self.our_id}</DeviceID>\r\n<Status>OK</Status>\r\n"
                "</Notify>\r\n").encode("ascii")
        resp = await self.endpoint.request("MESSAGE", link.peer, f"sip:{up.platform_id}@{up.domain}", body=body,
                                           content_type=MANSCDP_TYPE)
        if resp.status >= 300:
            log.info("cascade to %s: keepalive answered %d; registering again", up.platform_id, resp.status)
            link.registered = False

    # -- its queries ----------------------------------------------------------------------

    async def _on_message(self, inc: Incoming) -> SipResponse:
        req = inc.request
        link = self.links.get(req.from_.user)
        if link is None:
            return inc.response(403)
        try:
            doc = read_body(req.body, req.charset)
        except ManscdpError as exc:
            return inc.response(400, f"Bad Request ({str(exc)[:80]})")
        if doc.kind == "Query" and doc.cmd_type == "Catalog":
            asyncio.get_running_loop().create_task(self._answer_catalog(link, str(doc.sn or 0), doc.encoding))
        return inc.response(200)

    async def _answer_catalog(self, link: _Link, sn: str, encoding: str) -> None:
        up = link.upstream
        cameras = await asyncio.to_thread(cascade_cameras, self.registry, up)
        for body in catalog_bodies(self.our_id, sn, cameras, encoding):
            resp = await self.endpoint.request("MESSAGE", link.peer, f"sip:{up.platform_id}@{up.domain}", body=body,
                                               content_type=MANSCDP_TYPE)
            if resp.status >= 300:
                log.warning("cascade to %s: Catalog MESSAGE answered %d", up.platform_id, resp.status)
                return
        log.info("cascade to %s: Catalog of %d camera(s) sent", up.platform_id, len(cameras))

    # -- its INVITEs -------------------------------------------------------------------------

    async def _on_invite(self, inc: Incoming) -> SipResponse:
        req = inc.request
        upstream = req.from_.user
        link = self.links.get(upstream)
        camera_id = (req.get("Subject") or "").split(":")[0] or (req.uri.split(":")[1].split("@")[0]
                                                                  if ":" in req.uri else "")
        if link is None:
            return inc.response(403, "Forbidden (not an upper platform of ours)")
        offer = _sdp_fields(req.body)

        def refuse(status: int, reason: str) -> SipResponse:
            self.audit(upstream, "denied", camera_id, f"INVITE s={offer['session']} refused: {status} {reason}")
            return inc.response(status, reason)

        if offer["session"] and offer["session"].lower() != "play":
            return refuse(488, f"Not Acceptable Here (s={offer['session']} is not served yet)")
        allowed = {c.id for c in await asyncio.to_thread(cascade_cameras, self.registry, link.upstream)}
        if camera_id not in allowed:
            return refuse(404, "Not Found (no such camera in this platform's regions)")
        hub = self.hubs.get(camera_id, "main")
        if hub is None or not hub.online or self.hubs.loop is None:
            return refuse(480, "Temporarily Unavailable (the camera is not live)")
        if not offer["host"] or not offer["port"]:
            return refuse(488, "Not Acceptable Here (no c=/m= in the offer)")
        listen_port = 0
        mode = "udp"
        if offer["tcp"]:
            if offer["setup"] == "active":
                mode = "tcp-listen"
                listen_port = self.ports.candidates()[0]
                self.ports.hold(listen_port)
            else:
                mode = "tcp-connect"
        ssrc = offer["ssrc"]
        our_port = listen_port or 0
        lines = ["v=0", f"o={self.our_id} 0 0 IN IP4 {self.media_host}", "s=Play", f"c=IN IP4 {self.media_host}",
                 "t=0 0", f"m=video {our_port} {'TCP/RTP/AVP' if offer['tcp'] else 'RTP/AVP'} 96", "a=sendonly",
                 "a=rtpmap:96 PS/90000"]
        if offer["tcp"]:
            lines += [f"a=setup:{'passive' if mode == 'tcp-listen' else 'active'}", "a=connection:new"]
        lines.append(f"y={ssrc:010d}")
        resp, dialog = inc.accept(("\r\n".join(lines) + "\r\n").encode("ascii"))
        sender = PsRtpSender(hub, offer["host"], offer["port"], ssrc, mode, listen_port, self.bind_host)
        session = CascadeSession(upstream, camera_id, sender, dialog)
        self.sessions.append(session)
        sender.start(self.hubs.loop)
        self.audit(upstream, "ok", camera_id, f"live to {offer['host']}:{offer['port']} ({mode}), ssrc {ssrc}")
        asyncio.get_running_loop().create_task(self._watch(session, listen_port))
        return resp

    async def _watch(self, session: CascadeSession, listen_port: int) -> None:
        await session.dialog.ended.wait()
        if self.hubs.loop is not None:
            session.sender.stop(self.hubs.loop)
        if listen_port:
            self.ports.release(listen_port)
        if session in self.sessions:
            self.sessions.remove(session)
        st = session.sender.stats
        self.audit(session.upstream, "ok", session.camera_id,
                   f"live ended ({session.dialog.end_reason}): {st.frames} frames, {st.bytes} bytes")
