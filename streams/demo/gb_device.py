"""``SimulatedGbDevice``: one GB/T 28181 camera of our own for ``sharpeyes demo``.

It registers to the demo's SIP server with digest (its own SIP endpoint on 127.0.0.1), keeps
alive, answers Catalog (one channel, a Chinese name, the demo township as CivilCode) and
DeviceInfo, and answers INVITE ``s=Play`` with PS over RTP (UDP, or TCP either way) from one of
the demo's encoded loops, so a first look shows both ingest paths: RTSP and GB/T 28181.
It is a demo, not a test peer: the tests use SIPp and independent PS muxers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from config.cameras import Camera
from ingest.gb28181.manscdp import MANSCDP_TYPE, ManscdpError, build, read_body
from ingest.gb28181.sip import Credentials, Dialog, Incoming, Peer, SipEndpoint, SipResponse
from streams.cascade.sender import PsRtpSender
from streams.cascade.service import _sdp_fields, catalog_bodies
from streams.demo.simulated import LoopSource

log = logging.getLogger(__name__)

DEMO_DEVICE_ID = "34020000001320000099"
DEMO_CHANNEL_ID = "34020000001310000099"


@dataclass
class SimulatedGbDevice:
    source: LoopSource
    server: Peer  # our SIP server
    server_id: str
    domain: str
    password: str
    civil_code: str
    device_id: str = DEMO_DEVICE_ID
    channel_id: str = DEMO_CHANNEL_ID
    name: str = "模拟国标摄像机 (simulated GB/T 28181)"
    keepalive_s: float = 30.0
    endpoint: SipEndpoint | None = None
    registered: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _senders: list[PsRtpSender] = field(default_factory=list)
    _sn: int = 0

    async def start(self) -> None:
        ep = self.endpoint = SipEndpoint(user=self.device_id, domain=self.domain, host="127.0.0.1", port=0,
                                         user_agent="sharpeyes simulated GB device", tcp=False)
        await ep.start()
        ep.on("MESSAGE", self._on_message)
        ep.on("INVITE", self._on_invite)
        self._spawn(self._keep_registered())

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for s in self._senders:
            s.stop(loop)
        for task in list(self._tasks):
            task.cancel()
        if self.endpoint is not None:
            await self.endpoint.close()

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_registered(self) -> None:
        assert self.endpoint is not None
        me = f"sip:{self.device_id}@{self.domain}"
        while True:
            try:
                resp = await self.endpoint.request(
                    "REGISTER", self.server, f"sip:{self.server_id}@{self.domain}", to_uri=me, from_uri=me,
                    headers=[("Expires", "3600")], credentials=Credentials(self.device_id, self.password))
                self.registered = 200 <= resp.status < 300
                if not self.registered:
                    log.warning("simulated GB device: REGISTER answered %d %s", resp.status, resp.reason)
                    await asyncio.sleep(10)
                    continue
                for _ in range(int(1800 / self.keepalive_s)):
                    await asyncio.sleep(self.keepalive_s)
                    self._sn += 1
                    body = build("Notify", "Keepalive", self._sn, self.device_id, {"Status": "OK"})
                    ka = await self.endpoint.request("MESSAGE", self.server, f"sip:{self.server_id}@{self.domain}",
                                                     body=body, content_type=MANSCDP_TYPE)
                    if ka.status >= 300:
                        break  # the server forgot us: register again
            except (OSError, ConnectionError) as exc:
                log.info("simulated GB device: %s; again in 5 s", exc)
                await asyncio.sleep(5)

    async def _on_message(self, inc: Incoming) -> SipResponse:
        try:
            doc = read_body(inc.request.body, inc.request.charset)
        except ManscdpError:
            return inc.response(400)
        if doc.kind == "Query":
            self._spawn(self._answer(doc.cmd_type, str(doc.sn or 0), doc.encoding))
        return inc.response(200)

    async def _answer(self, cmd: str, sn: str, encoding: str) -> None:
        assert self.endpoint is not None
        if cmd == "Catalog":
            channel = Camera(id=self.channel_id, name=self.name, region=self.civil_code, source="gb28181",
                             gb_device_id=self.device_id)
            bodies = catalog_bodies(self.device_id, sn, [channel], encoding)
        elif cmd == "DeviceInfo":
            bodies = [build("Response", "DeviceInfo", int(sn), self.device_id,
                            {"Result": "OK", "DeviceName": "simulated", "Manufacturer": "sharpeyes",
                             "Model": "demo", "Firmware": "1", "Channel": "1"})]
        elif cmd == "DeviceStatus":
            bodies = [build("Response", "DeviceStatus", int(sn), self.device_id,
                            {"Result": "OK", "Online": "ONLINE", "Status": "OK", "Encode": "ON", "Record": "OFF"})]
        else:
            return
        for body in bodies:
            await self.endpoint.request("MESSAGE", self.server, f"sip:{self.server_id}@{self.domain}", body=body,
                                        content_type=MANSCDP_TYPE)

    async def _on_invite(self, inc: Incoming) -> SipResponse:
        offer = _sdp_fields(inc.request.body)
        if not offer["host"] or not offer["port"]:
            return inc.response(488)
        mode, listen_port = "udp", 0
        if offer["tcp"]:
            if offer["setup"] == "active":  # the platform connects: we listen
                mode, listen_port = "tcp-listen", 15099
            else:
                mode = "tcp-connect"
        ssrc = offer["ssrc"]
        proto = "TCP/RTP/AVP" if offer["tcp"] else "RTP/AVP"
        lines = ["v=0", f"o={self.channel_id} 0 0 IN IP4 127.0.0.1", "s=Play", "c=IN IP4 127.0.0.1", "t=0 0",
                 f"m=video {listen_port or 15098} {proto} 96", "a=sendonly", "a=rtpmap:96 PS/90000"]
        if offer["tcp"]:
            lines += [f"a=setup:{'passive' if mode == 'tcp-listen' else 'active'}", "a=connection:new"]
        lines.append(f"y={ssrc:010d}")
        resp, dialog = inc.accept(("\r\n".join(lines) + "\r\n").encode("ascii"))
        sender = PsRtpSender(self.source, offer["host"], offer["port"], ssrc, mode, listen_port, "127.0.0.1")
        self._senders.append(sender)
        sender.start(asyncio.get_running_loop())
        self._spawn(self._watch(dialog, sender))
        return resp

    async def _watch(self, dialog: Dialog, sender: PsRtpSender) -> None:
        await dialog.ended.wait()
        sender.stop(asyncio.get_running_loop())
        if sender in self._senders:
            self._senders.remove(sender)
