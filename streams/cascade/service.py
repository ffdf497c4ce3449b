"""``CascadeService``: we are a lower platform of each configured upper platform (``gb upstream add``).

On the GB/T 28181 SIP server's loop, for every row of ``UpstreamStore``:
- **REGISTER** to it (``sip:ID@DOMAIN``) with MD5 digest (user: our ``GB_ID``), ``Expires: 3600``,
  refreshed at half-time; a refusal is retried with backoff (never a 401 loop: the endpoint
  answers one challenge per request), and the state and reason are written to its row.
- **Keepalive** MESSAGEs (``Notify/Keepalive``) every ``keepalive_s``.
- Its **DeviceInfo** and **DeviceStatus** queries (of our GB_ID or of one of its cameras) are
  answered 200, then with a ``Response`` MESSAGE (``device_response``).
- Its **RecordInfo** query for one of its cameras: our recorded runs in its time range.
- Its **Catalog** query (a MESSAGE from its id) is answered 200, then with ``Response/Catalog``
  MESSAGEs listing the cameras of its regions (and their sub-regions) that have 20-digit ids,
  ``SumNum`` in each, up to ``CATALOG_BATCH`` items a MESSAGE, in the encoding it asked in
  (GB2312/GB18030 or UTF-8).
- Its **INVITE s=Play** for one of those cameras is answered with our SDP and PS over RTP from
  the camera's live hub (``PsRtpSender``: UDP; TCP where we connect if it offered
  ``a=setup:passive``, or listen if ``a=setup:active``); BYE ends it.
- Its **INVITE s=Playback** (``t=`` in Unix seconds) is served from our archive the same way
  (``ArchiveSource``: the clip builder's range as access units, paced in real time; MANSRTSP
  INFO PAUSE/PLAY/Scale); at the end of the range, ``MediaStatus`` 121 in the dialog, then BYE
  unless the platform hangs up first. Nothing recorded in the range: 404 with the reason.
- Every cascade session (accepted or refused) is an audit row (``gb_cascade``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from importlib import metadata
from dataclasses import dataclass, field
from typing import Any, Callable

from lxml import etree

from config.cameras import Camera
from ingest.gb28181.manscdp import MANSCDP_TYPE, Manscdp, ManscdpError, build, read_body
from ingest.gb28181.media.receiver import PortPool
from ingest.gb28181.sip import Credentials, Dialog, Incoming, Peer, SipEndpoint, SipResponse
from ingest.live.hub import LiveHubs
from storage.index.gb_upstreams import Upstream, UpstreamStore
from storage.archive.clips import ClipError, EncodingChanged, NoRecordings, plan_clip
from storage.index.registry import Registry
from storage.index.segments import SegmentIndex
from storage.objects.store import ObjectStore
from config.times import gb_local_time, iso_utc, parse_gb_local_time
from storage.archive.timeline import Run, runs_of
from storage.index.segments import now_us
from streams.cascade.archive import ArchiveSource
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


def list_bodies(cmd_type: str, sn: str, device_id: str, head: list[tuple[str, str]], list_tag: str,
                items: list[list[tuple[str, str]]], encoding: str) -> list[bytes]:
    """``Response`` bodies of a list (``DeviceList``, ``RecordList``), ``CATALOG_BATCH`` items each,
    every one with the full ``SumNum``, in ``encoding`` ("utf-8", else GB2312 written as GB18030)."""
    declared, codec = ("UTF-8", "utf-8") if encoding == "utf-8" else ("GB2312", "gb18030")
    batches = [items[i : i + CATALOG_BATCH] for i in range(0, len(items), CATALOG_BATCH)] or [[]]
    out = []
    for batch in batches:
        root = etree.Element("Response")
        for tag, value in (("CmdType", cmd_type), ("SN", sn), ("DeviceID", device_id), *head,
                           ("SumNum", str(len(items)))):
            etree.SubElement(root, tag).text = value
        listed = etree.SubElement(root, list_tag, Num=str(len(batch)))
        for fields in batch:
            item = etree.SubElement(listed, "Item")
            for tag, value in fields:
                etree.SubElement(item, tag).text = value
        text = etree.tostring(root, pretty_print=True, encoding="unicode")
        out.append(f'<?xml version="1.0" encoding="{declared}"?>\r\n{text}'.encode(codec))
    return out


def catalog_bodies(our_id: str, sn: str, cameras: list[Camera], encoding: str) -> list[bytes]:
    """``Response/Catalog`` bodies: ``list_bodies`` of the cameras."""
    items = [[("DeviceID", cam.id), ("Name", cam.name), ("Manufacturer", "sharpeyes"), ("Model", "county platform"),
              ("Owner", "sharpeyes"), ("CivilCode", cam.region), ("Address", ""), ("Parental", "0"),
              ("ParentID", our_id), ("SafetyWay", "0"), ("RegisterWay", "1"), ("Secrecy", "0"),
              ("Status", "ON" if cam.enabled else "OFF")] for cam in cameras]
    return list_bodies("Catalog", sn, our_id, [], "DeviceList", items, encoding)


def record_info_bodies(sn: str, channel_id: str, name: str, runs: list[Run], zone: str, encoding: str) -> list[bytes]:
    """``Response/RecordInfo`` bodies: one item per recorded run of the channel's main stream,
    times in GB/T 28181 local time (``zone``)."""
    def t(us: int) -> str:
        return gb_local_time(us, zone)[:19]
    items = [[("DeviceID", channel_id), ("Name", name), ("FilePath", f"{channel_id}/{t(r.start_us)}"),
              ("Address", "sharpeyes"), ("StartTime", t(r.start_us)), ("EndTime", t(r.end_us)), ("Secrecy", "0"),
              ("Type", "time")] for r in runs]
    return list_bodies("RecordInfo", sn, channel_id, [("Name", name)], "RecordList", items, encoding)


def _version() -> str:
    try:
        return metadata.version("sharpeyes")
    except metadata.PackageNotFoundError:
        return "unknown"


def device_response(cmd_type: str, sn: str, device_id: str, our_id: str, cameras: list[Camera], hubs: LiveHubs,
                    zone: str, encoding: str) -> bytes:
    """The body answering an upper platform's ``Query/DeviceInfo`` or ``Query/DeviceStatus`` for
    ``device_id``: this platform (``our_id``) or one of ``cameras`` (the ones it may see)."""
    cam = next((c for c in cameras if c.id == device_id), None)
    if device_id != our_id and cam is None:
        return build("Response", cmd_type, int(sn) if sn.isdigit() else 0, device_id,
                     {"Result": "ERROR", "Reason": "no such device or channel in this platform's regions"},
                     encoding=encoding)
    fields: dict[str, str] = {"Result": "OK"}
    if cmd_type == "DeviceInfo":
        fields.update(DeviceName=cam.name if cam is not None else "sharpeyes county platform",
                      Manufacturer="sharpeyes", Model="county platform" if cam is None else "channel",
                      Firmware=_version(), Channel=str(len(cameras) if cam is None else 1))
    else:
        hub = hubs.get(cam.id, "main") if cam is not None else None
        online = cam is None or (hub is not None and hub.online)
        recording = cam.enabled if cam is not None else any(c.enabled for c in cameras)
        fields.update(Online="ONLINE" if online else "OFFLINE", Status="OK" if online else "ERROR",
                      Encode="ON" if online else "OFF", Record="ON" if recording else "OFF",
                      DeviceTime=gb_local_time(now_us(), zone)[:19])
    return build("Response", cmd_type, int(sn) if sn.isdigit() else 0, device_id, fields, encoding=encoding)


def _sdp_fields(body: bytes) -> dict[str, Any]:
    """What an upper platform's INVITE offers: media address, transport, ``y=`` SSRC, ``s=`` and,
    for ``s=Playback``, ``t=START STOP`` (Unix seconds) and ``u=CHANNEL:TYPE``."""
    host, port, tcp, setup, ssrc, session = "", 0, False, "", 0, ""
    start = stop = 0
    uri = ""
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
        elif line.startswith("t="):
            times = line[2:].split()
            if len(times) == 2 and all(t.isdigit() for t in times):
                start, stop = int(times[0]), int(times[1])
        elif line.startswith("u="):
            uri = line[2:].strip().split(":")[0]
    return {"host": host, "port": port, "tcp": tcp, "setup": setup, "ssrc": ssrc, "session": session,
            "start": start, "stop": stop, "uri": uri}


def mansrtsp(body: bytes) -> tuple[str, float | None]:
    """A MANSRTSP request (an INFO body in a playback dialog): its method (``PLAY``, ``PAUSE``,
    ``TEARDOWN``) and its ``Scale:`` if any."""
    lines = body.decode("utf-8", "replace").splitlines()
    method = lines[0].split()[0].upper() if lines and lines[0].split() else ""
    scale = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "scale":
            try:
                scale = float(value.strip())
            except ValueError:
                pass
    return method, scale


def media_status_body(device_id: str, sn: int) -> bytes:
    """``Notify/MediaStatus`` with ``NotifyType`` 121: the file (the requested range) has ended."""
    return (f'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>MediaStatus</CmdType>\r\n'
            f"<SN>{sn}</SN>\r\n<DeviceID>{device_id}</DeviceID>\r\n<NotifyType>121</NotifyType>\r\n"
            "</Notify>\r\n").encode("ascii")


def _contact(up: Upstream) -> tuple[str, str, int, str]:
    """What a registration depends on (a change means registering anew)."""
    return up.domain, up.host, up.port, up.transport


@dataclass
class CascadeSession:
    upstream: str
    camera_id: str
    sender: PsRtpSender
    dialog: Dialog
    kind: str = "live"  # or "playback"
    loop: asyncio.AbstractEventLoop | None = None  # where the sender runs


@dataclass
class _Link:
    upstream: Upstream
    password: str
    peer: Peer
    # One Call-ID and a rising CSeq for every REGISTER to this upstream, refreshes and the
    # final Expires: 0 included (RFC 3261 10.2.4): a registrar may take a new Call-ID for
    # another registration of ours, or refuse a CSeq that did not rise.
    call_id: str = ""
    cseq: int = 0
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
    # The archive, for s=Playback (without it, Playback is refused with 488).
    index: SegmentIndex | None = None
    objects: ObjectStore | None = None
    # After the end of a playback range (MediaStatus 121 sent), how long the platform has to BYE.
    bye_grace_s: float = 5.0
    timezone: str = "Asia/Shanghai"  # DeviceTime in DeviceStatus: GB/T 28181 local time (DISPLAY_TIMEZONE)
    poll_s: float = 2.0  # how often gb_upstreams is read again (``gb upstream add/remove``)
    links: dict[str, _Link] = field(default_factory=dict)
    sessions: list[CascadeSession] = field(default_factory=list)
    _sn: Any = field(default_factory=lambda: itertools.count(1))
    _routes: dict[str, Callable[[Incoming], Any]] = field(default_factory=dict)
    _poll_task: asyncio.Task[None] | None = None

    # -- life cycle ------------------------------------------------------------------

    def start(self, message_routes: dict[str, Callable[[Incoming], Any]]) -> None:
        """Start on the SIP loop: one task per upper platform; ``message_routes`` is the device
        service's table of MESSAGE handlers by sender id (upper platforms are no devices).
        The table ``gb_upstreams`` is read again every ``poll_s``: ``gb upstream add`` and
        ``remove`` take effect in a running process (see ``_apply``)."""
        self.endpoint.on("INVITE", self._on_invite)
        self._routes = message_routes
        self._apply([(up, self.store.password(up.platform_id)) for up in self.store.all()])
        self._poll_task = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        def read() -> list[tuple[Upstream, str]]:
            return [(up, self.store.password(up.platform_id)) for up in self.store.all()]
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                rows = await asyncio.to_thread(read)
            except Exception:  # noqa: BLE001 - an index hiccup must not end the cascade
                log.exception("cascade: reading gb_upstreams failed; trying again in %.0f s", self.poll_s)
                continue
            self._apply(rows)

    def _apply(self, rows: list[tuple[Upstream, str]]) -> None:
        """Make the links match the table: a new row gets a link (REGISTER at once), a removed
        one is unregistered (Expires: 0) and its sessions ended, a row whose address, transport,
        domain or password changed registers anew; changed regions apply to its next query."""
        wanted = {up.platform_id: (up, password) for up, password in rows}
        loop = asyncio.get_running_loop()
        for pid, link in list(self.links.items()):
            if pid not in wanted:
                log.info("cascade: upstream %s removed; unregistering", pid)
                self._drop(link)
                loop.create_task(self._unregister(link))
        for pid, (up, password) in wanted.items():
            old = self.links.get(pid)
            if old is not None and _contact(old.upstream) == _contact(up) and old.password == password:
                old.upstream = up
                continue
            if old is not None:
                log.info("cascade: upstream %s changed; registering again", pid)
                self._drop(old)
            peer = Peer("TCP" if up.transport == "tcp" else "UDP", up.host, up.port)
            link = self.links[pid] = _Link(up, password, peer)
            self._routes[pid] = self._on_message
            link.task = loop.create_task(self._keep_registered(link))

    def _drop(self, link: _Link) -> None:
        pid = link.upstream.platform_id
        self.links.pop(pid, None)
        self._routes.pop(pid, None)
        if link.task is not None:
            link.task.cancel()
        for session in [s for s in self.sessions if s.upstream == pid]:
            asyncio.get_running_loop().create_task(session.dialog.bye("upstream removed or changed"))

    async def _unregister(self, link: _Link) -> None:
        if not link.registered:
            return
        try:
            await asyncio.wait_for(self._register(link, 0), 10)
        except (asyncio.TimeoutError, OSError) as exc:
            log.info("cascade: unregistering from %s: %s", link.upstream.platform_id, exc)

    async def close(self) -> None:
        if self._poll_task is not None:
            self._poll_task.cancel()
        for s in self.sessions:
            s.sender.stop(s.loop or self.hubs.loop or asyncio.get_running_loop())
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
        link.call_id = link.call_id or self.endpoint.new_call_id()
        link.cseq += 1
        resp = await self.endpoint.request(
            "REGISTER", link.peer, f"sip:{up.platform_id}@{up.domain}", to_uri=local, from_uri=local,
            headers=[("Expires", str(expires))], credentials=Credentials(self.our_id, link.password),
            call_id=link.call_id, cseq=link.cseq)
        link.cseq = max(link.cseq, resp.cseq[0])  # a digest challenge's retry went one up
        return resp

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
        elif doc.kind == "Query" and doc.cmd_type in ("DeviceInfo", "DeviceStatus"):
            asyncio.get_running_loop().create_task(self._answer_device(link, doc))
        elif doc.kind == "Query" and doc.cmd_type == "RecordInfo":
            asyncio.get_running_loop().create_task(self._answer_records(link, doc))
        return inc.response(200)

    async def _send(self, link: _Link, body: bytes, what: str) -> bool:
        up = link.upstream
        resp = await self.endpoint.request("MESSAGE", link.peer, f"sip:{up.platform_id}@{up.domain}", body=body,
                                           content_type=MANSCDP_TYPE)
        if resp.status >= 300:
            log.warning("cascade to %s: %s MESSAGE answered %d", up.platform_id, what, resp.status)
        return resp.status < 300

    async def _answer_device(self, link: _Link, doc: Manscdp) -> None:
        """``Response/DeviceInfo`` or ``Response/DeviceStatus`` of this platform (its DeviceID is
        our GB_ID) or of one of the platform's cameras (a channel id); any other id gets
        ``Result`` ERROR with the reason."""
        cameras = await asyncio.to_thread(cascade_cameras, self.registry, link.upstream)
        body = device_response(doc.cmd_type, str(doc.sn or 0), doc.device_id or self.our_id, self.our_id, cameras,
                               self.hubs, self.timezone, "UTF-8" if doc.encoding == "utf-8" else "GB2312")
        await self._send(link, body, doc.cmd_type)

    async def _answer_records(self, link: _Link, doc: Manscdp) -> None:
        """``Response/RecordInfo``: the recorded runs of one of its cameras between its StartTime
        and EndTime (local time); an unknown camera, a bad time or no archive: an empty list."""
        cameras = await asyncio.to_thread(cascade_cameras, self.registry, link.upstream)
        cam = next((c for c in cameras if c.id == doc.device_id), None)
        runs: list[Run] = []
        index = self.index
        if cam is not None and index is not None:
            try:
                start = parse_gb_local_time(doc.text("StartTime"), self.timezone)
                end = parse_gb_local_time(doc.text("EndTime"), self.timezone)
            except ValueError as exc:
                log.info("cascade to %s: RecordInfo with bad times (%s); answering an empty list",
                         link.upstream.platform_id, exc)
            else:
                runs = await asyncio.to_thread(lambda: runs_of(index.segments(cam.id, "main", start, end), start, end))
        encoding = "utf-8" if doc.encoding == "utf-8" else "gb18030"
        for body in record_info_bodies(str(doc.sn or 0), doc.device_id, cam.name if cam else "", runs,
                                       self.timezone, encoding):
            if not await self._send(link, body, "RecordInfo"):
                return

    async def _answer_catalog(self, link: _Link, sn: str, encoding: str) -> None:
        up = link.upstream
        cameras = await asyncio.to_thread(cascade_cameras, self.registry, up)
        for body in catalog_bodies(self.our_id, sn, cameras, encoding):
            if not await self._send(link, body, "Catalog"):
                return
        log.info("cascade to %s: Catalog of %d camera(s) sent", up.platform_id, len(cameras))

    # -- its INVITEs -------------------------------------------------------------------------

    async def _on_invite(self, inc: Incoming) -> SipResponse:
        req = inc.request
        upstream = req.from_.user
        link = self.links.get(upstream)
        offer = _sdp_fields(req.body)
        camera_id = (req.get("Subject") or "").split(":")[0] or offer["uri"] or (
            req.uri.split(":")[1].split("@")[0] if ":" in req.uri else "")
        if link is None:
            return inc.response(403, "Forbidden (not an upper platform of ours)")

        def refuse(status: int, reason: str) -> SipResponse:
            self.audit(upstream, "denied", camera_id, f"INVITE s={offer['session']} refused: {status} {reason}")
            return inc.response(status, reason)

        kind = (offer["session"] or "play").lower()
        if kind not in ("play", "playback"):
            return refuse(488, f"Not Acceptable Here (s={offer['session']} is not served; Play and Playback are)")
        allowed = {c.id for c in await asyncio.to_thread(cascade_cameras, self.registry, link.upstream)}
        if camera_id not in allowed:
            return refuse(404, "Not Found (no such camera in this platform's regions)")
        if not offer["host"] or not offer["port"]:
            return refuse(488, "Not Acceptable Here (no c=/m= in the offer)")
        source: Any
        if kind == "play":
            source = self.hubs.get(camera_id, "main")
            if source is None or not source.online or self.hubs.loop is None:
                return refuse(480, "Temporarily Unavailable (the camera is not live)")
            loop = self.hubs.loop
        else:
            planned = await self._plan_playback(camera_id, offer["start"], offer["stop"])
            if isinstance(planned, tuple):
                return refuse(*planned)
            source, loop = planned, asyncio.get_running_loop()
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
        name, times = ("Play", "0 0") if kind == "play" else ("Playback", f"{offer['start']} {offer['stop']}")
        lines = ["v=0", f"o={self.our_id} 0 0 IN IP4 {self.media_host}", f"s={name}",
                 f"c=IN IP4 {self.media_host}", f"t={times}",
                 f"m=video {listen_port} {'TCP/RTP/AVP' if offer['tcp'] else 'RTP/AVP'} 96", "a=sendonly",
                 "a=rtpmap:96 PS/90000"]
        if offer["tcp"]:
            lines += [f"a=setup:{'passive' if mode == 'tcp-listen' else 'active'}", "a=connection:new"]
        lines.append(f"y={ssrc:010d}")
        resp, dialog = inc.accept(("\r\n".join(lines) + "\r\n").encode("ascii"))
        sender = PsRtpSender(source, offer["host"], offer["port"], ssrc, mode, listen_port, self.bind_host)
        session = CascadeSession(upstream, camera_id, sender, dialog, kind="live" if kind == "play" else "playback",
                                 loop=loop)
        self.sessions.append(session)
        where = f"to {offer['host']}:{offer['port']} ({mode}), ssrc {ssrc}"
        if isinstance(source, ArchiveSource):
            sip_loop = asyncio.get_running_loop()

            def ended() -> None:
                sip_loop.create_task(self._range_ended(session))
            sender.on_end = ended
            dialog.on_request = lambda r: self._on_info(session, source, r)
            plan = source.plan
            self.audit(upstream, "ok", camera_id, f"playback {iso_utc(plan.first_us)}..{iso_utc(plan.last_us)} {where}")
        else:
            self.audit(upstream, "ok", camera_id, f"live {where}")
        sender.start(loop)
        asyncio.get_running_loop().create_task(self._watch(session, listen_port))
        return resp

    async def _plan_playback(self, camera_id: str, start_s: int, stop_s: int) -> ArchiveSource | tuple[int, str]:
        """The archive range an s=Playback asks for, or (status, reason) to refuse it with."""
        index, store = self.index, self.objects
        if index is None or store is None:
            return 488, "Not Acceptable Here (this platform has no archive to play back from)"
        if not 0 < start_s < stop_s:
            return 400, "Bad Request (s=Playback needs t=START STOP in Unix seconds, START before STOP)"
        start_us, end_us = start_s * 1_000_000, stop_s * 1_000_000

        def plan() -> Any:
            try:
                return plan_clip(index, camera_id, "main", start_us, end_us, store=store, allow_gaps=True)
            except EncodingChanged as exc:  # play up to the change: one PS stream is one encoding
                return plan_clip(index, camera_id, "main", start_us, exc.at_us, store=store, allow_gaps=True)
        try:
            return ArchiveSource(await asyncio.to_thread(plan), store)
        except NoRecordings:
            return 404, (f"Not Found (camera {camera_id} has no recordings between {iso_utc(start_us)} and "
                         f"{iso_utc(end_us)}; query RecordInfo for what exists)")
        except (ClipError, ValueError) as exc:
            log.warning("cascade playback of %s: %s", camera_id, exc)
            return 500, f"Server Internal Error (the archive cannot be read: {str(exc)[:120]})"

    def _on_info(self, session: CascadeSession, source: ArchiveSource, req: Any) -> None:
        """MANSRTSP in an INFO: PAUSE, PLAY (resume, with ``Scale:``), TEARDOWN; seeking
        (``Range: npt=``) is not supported and ignored."""
        method, scale = mansrtsp(req.body)
        if method == "PAUSE":
            source.pause()
        elif method == "PLAY":
            source.play(scale)
        elif method == "TEARDOWN":
            asyncio.get_running_loop().create_task(session.dialog.bye("platform TEARDOWN"))
        log.info("cascade playback of %s to %s: %s%s", session.camera_id, session.upstream, method,
                 f" scale {scale}" if scale else "")

    async def _range_ended(self, session: CascadeSession) -> None:
        """The range was sent (or the media link failed): MediaStatus 121 in the dialog, as
        GB/T 28181 asks, then BYE unless the platform sends its own within ``bye_grace_s``."""
        dialog = session.dialog
        if dialog.ended.is_set():
            return
        try:
            await dialog.request("MESSAGE", body=media_status_body(session.camera_id, next(self._sn)),
                                 content_type=MANSCDP_TYPE)
            await asyncio.wait_for(dialog.ended.wait(), self.bye_grace_s)
        except (asyncio.TimeoutError, OSError):
            pass
        if not dialog.ended.is_set():
            await dialog.bye("end of the playback range")

    async def _watch(self, session: CascadeSession, listen_port: int) -> None:
        await session.dialog.ended.wait()
        if session.loop is not None:
            session.sender.stop(session.loop)
        if listen_port:
            self.ports.release(listen_port)
        if session in self.sessions:
            self.sessions.remove(session)
        st = session.sender.stats
        self.audit(session.upstream, "ok", session.camera_id,
                   f"{session.kind} ended ({session.dialog.end_reason}): {st.frames} frames, {st.bytes} bytes"
                   + (f"; {st.error}" if st.error else ""))
