"""Cascade: SIPp as the upper (city) platform (media over UDP, and TCP where it listens).
It challenges our REGISTER and checks the digest
(``verifyauth``: a wrong one gets 403), queries our Catalog (we answer in GB2312 with the cameras
of the configured region, Chinese names kept), then INVITEs one camera: the PS over RTP that
reaches its media port is stripped of RTP here and decoded by ffprobe."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from config.cameras import Camera, Region
from config.settings import Settings
from config.times import gb_local_time
from ingest.gb28181.media.receiver import PortPool
from ingest.live.hub import LiveHubs
from ingest.supervisor import Supervisor
from sharpeyes.services import Services
from storage.index.gb_upstreams import UpstreamStore
from streams.cascade.service import CascadeService
from tests.gb28181.conftest import start_gb
from tests.support.cameras import Mount
from tests.support.sipp import answer, free_udp_tcp_port, needs_sipp, run_sipp

pytestmark = needs_sipp

UP_ID = "34000000002000000001"
UP_DOMAIN = "3400000000"
OUR_ID = "34020000002000000001"
CAMERA = "34010200001320000001"
OTHER = "34019900001320000002"  # in a region the city was not given
PASSWORD = "City-link-pass-1"


def _catalog_query(cmd: str = "Catalog", device_id: str = OUR_ID, sn: int = 77, fields: str = "") -> str:
    """The platform's ``Query`` of ``cmd`` for ``device_id`` (a MESSAGE; we answer 200 to it);
    ``fields``: more XML elements of the query."""
    msg = (f'<?xml version="1.0" encoding="GB2312"?>\n<Query>\n<CmdType>{cmd}</CmdType>\n<SN>{sn}</SN>\n'
           f"<DeviceID>{device_id}</DeviceID>\n{fields}</Query>")
    return f"""  <send retrans="500">
    <![CDATA[
      MESSAGE sip:{OUR_ID}@3402000000 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{UP_ID}@{UP_DOMAIN}>;tag=q[call_number]
      To: <sip:{OUR_ID}@3402000000>
      Call-ID: [call_id]
      CSeq: {sn} MESSAGE
      Content-Type: Application/MANSCDP+xml
      Max-Forwards: 70
      Content-Length: [len]

      {msg}
    ]]>
  </send>
  <recv response="200"/>
"""


def _in_dialog(method: str, cseq: int, body: str = "", content_type: str = "") -> str:
    """A request of the platform's inside the INVITE dialog (ACK, BYE, INFO with a ``body``), its
    response awaited but for ACK."""
    retrans, answer = ("", "") if method == "ACK" else (' retrans="500"', '  <recv response="200"/>\n')
    ctype = f"Content-Type: {content_type}\n      " if content_type else ""
    return f"""  <send{retrans}>
    <![CDATA[
      {method} sip:{CAMERA}@3402000000 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{UP_ID}@{UP_DOMAIN}>;tag=inv[call_number]
      To: <sip:{CAMERA}@3402000000>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Max-Forwards: 70
      {ctype}Content-Length: [len]

      {body}
    ]]>
  </send>
{answer}"""


def _invite(sdp: str, answer: str = "200") -> str:
    """The platform's INVITE of ``CAMERA`` with ``sdp``; ``answer``: the final response it expects
    (a 200 is ACKed here; SIPp ACKs an error response itself)."""
    text = f"""  <send retrans="500">
    <![CDATA[
      INVITE sip:{CAMERA}@3402000000 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{UP_ID}@{UP_DOMAIN}>;tag=inv[call_number]
      To: <sip:{CAMERA}@3402000000>
      Call-ID: [call_id]
      CSeq: 30 INVITE
      Contact: <sip:{UP_ID}@[local_ip]:[local_port]>
      Subject: {CAMERA}:0100000001,{UP_ID}:0
      Content-Type: application/sdp
      Max-Forwards: 70
      Content-Length: [len]

      {sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="{answer}" rtd="true"/>
"""
    return text + (_in_dialog("ACK", 30) if answer == "200" else "")


def _scenario(name: str, body: str, lead_ms: int = 3000) -> str:
    """A platform scenario: ``lead_ms`` for our REGISTER to get through first, then ``body``."""
    return (f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n'
            f'  <pause milliseconds="{lead_ms}"/>\n{body}  <pause milliseconds="500"/>\n</scenario>\n')


def _offer(rtp_port: int, tcp: bool, session: str = "Play", times: str = "0 0") -> str:
    proto, setup = ("TCP/RTP/AVP", "a=setup:passive\na=connection:new\n") if tcp else ("RTP/AVP", "")
    uri = f"u={CAMERA}:0\n" if session == "Playback" else ""
    return (f"v=0\no={UP_ID} 0 0 IN IP4 127.0.0.1\ns={session}\n{uri}c=IN IP4 127.0.0.1\nt={times}\n"
            f"m=video {rtp_port} {proto} 96\na=recvonly\na=rtpmap:96 PS/90000\n{setup}y=0100000001\n")


def platform_scenario(rtp_port: int, tcp: bool = False) -> str:
    """The platform's own requests (SIPp as a client): its Catalog query, then an INVITE, then BYE."""
    return _scenario("upper platform", _catalog_query() + '  <pause milliseconds="3000"/>\n'
                     + _invite(_offer(rtp_port, tcp)) + '  <pause milliseconds="6000"/>\n' + _in_dialog("BYE", 31))


def platform_ooc(password: str) -> str:
    """What we send it: REGISTER (challenged, the digest checked by SIPp's verifyauth: 200 or 403),
    keepalive and Catalog MESSAGEs (200). A registration's later REGISTERs (refreshes, the final
    Expires: 0) come on its Call-ID, so SIPp gives them to the same call: after a 200 it waits
    for the next one, challenged again as a registrar that nonces each request would."""
    def ok(status: str, extra: str) -> str:
        return answer(status, to_tag=";tag=up[call_number]", extra=extra)
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="upper platform: what we send it">
  <label id="start"/>
  <recv request="MESSAGE" optional="true" next="message"/>
  <recv request="REGISTER"/>
{ok("401 Unauthorized", f'WWW-Authenticate: Digest realm="{UP_DOMAIN}", nonce="a1b2c3d4e5", '
           'algorithm=MD5' + chr(10) + "      ")}
  <recv request="REGISTER" crlf="true">
    <action>
      <verifyauth assign_to="authvalid" username="{OUR_ID}" password="{password}"/>
    </action>
  </recv>
  <nop hide="true" test="authvalid" next="good"/>
{ok("403 Forbidden", "")}
  <nop next="end"/>
  <label id="good"/>
{ok("200 OK", "Expires: 3600" + chr(10) + "      ")}
  <nop next="start"/>
  <label id="message"/>
{ok("200 OK", "")}
  <label id="end"/>
</scenario>
"""



def _rtp_sink(port: int, seconds: float, out: bytearray) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.5)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            continue
        csrc = data[0] & 0x0F
        out += data[12 + 4 * csrc:]  # RTP header stripped; nothing else touched
    sock.close()


def _rtp_sink_tcp(port: int, seconds: float, out: bytearray) -> None:
    """The platform listens (it offered a=setup:passive): RFC 4571 frames, RTP headers stripped."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    srv.settimeout(seconds)
    try:
        conn, _ = srv.accept()
    except TimeoutError:
        srv.close()
        return
    conn.settimeout(0.5)
    buf = bytearray()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = conn.recv(65536)
        except TimeoutError:
            continue
        if not data:
            break
        buf += data
        while len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
            n = int.from_bytes(buf[:2], "big")
            pkt = bytes(buf[2 : 2 + n])
            del buf[: 2 + n]
            out += pkt[12 + 4 * (pkt[0] & 0x0F):]
    conn.close()
    srv.close()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp-we-connect"])
def test_upper_platform_registers_us_gets_catalog_and_our_ps(tmp_path: Path, camera_server, tcp: bool) -> None:
    cams = camera_server({"/casc": Mount("h264", size=(640, 360), label="casc")})
    settings = Settings(data_dir=tmp_path, gb_sip_bind="127.0.0.1:0", gb_id=OUR_ID, worker_id="w1",
                        snapshots=False, motion=False)
    svc = Services(settings)
    svc.registry.add_region(Region(code="340102", name="蜀山区"))
    svc.registry.add_region(Region(code="340199", name="别的区"))
    svc.registry.add_camera(Camera(id=CAMERA, name="东门一号", region="340102", main_url=cams.url("/casc")))
    svc.registry.add_camera(Camera(id=OTHER, name="西门", region="340199", main_url=cams.url("/casc")))
    sup = Supervisor(settings, svc.registry, svc.index, svc.store)
    gb = start_gb(settings, svc.engine)
    sup.live.bind_loop(gb.server.loop)
    sup.start()
    store = UpstreamStore(svc.engine, svc.cipher)
    rtp_port, sip_port = free_udp_tcp_port(), free_udp_tcp_port()
    store.add(UP_ID, domain=UP_DOMAIN, host="127.0.0.1", port=sip_port, password=PASSWORD, regions=["340102"])
    audits: list[tuple[str, str, str, str]] = []
    cascade = CascadeService(gb.service.endpoint, store, svc.registry, sup.live, OUR_ID, "127.0.0.1",
                             PortPool(33000, 33009), audit=lambda *a: audits.append(a), keepalive_s=1.0)
    ps = bytearray()
    sink = threading.Thread(target=_rtp_sink_tcp if tcp else _rtp_sink, args=(rtp_port, 20, ps))
    try:
        deadline = time.monotonic() + 30
        while not ((hub := sup.live.get(CAMERA, "main")) is not None and hub.online):
            assert time.monotonic() < deadline, "the camera never went live"
            time.sleep(0.2)
        sipp = run_sipp(["-m", "1", "-timeout", "40", f"127.0.0.1:{gb.port}"],
                        scenario=platform_scenario(rtp_port, tcp), ooc=platform_ooc(PASSWORD), port=sip_port)
        sink.start()

        async def start() -> None:
            cascade.start(gb.service.message_routes)
        gb.call(start())
        assert sipp.wait(45) == 0, sipp.log
        sink.join()
    finally:
        gb.call(cascade.close())
        sup.close()
        gb.server.close()
    up = store.get(UP_ID)
    assert up is not None and up.state == "registered", up
    trace = (sipp.workdir / "sipp_messages.log").read_bytes()
    catalog = [m for m in trace.split(b"MESSAGE sip:") if b"<CmdType>Catalog</CmdType>" in m and b"<Response>" in m]
    assert catalog, "no Catalog response seen by the platform"
    assert CAMERA.encode() in catalog[0] and "东门一号".encode("gb2312") in catalog[0]
    assert b'encoding="GB2312"' in catalog[0] and OTHER.encode() not in trace
    assert b"<SumNum>1</SumNum>" in catalog[0]
    assert b"<CmdType>Keepalive</CmdType>" in trace
    path = tmp_path / "cascade.ps"
    path.write_bytes(bytes(ps))
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v", "-show_entries",
                            "stream=codec_name,nb_read_frames,width,height", "-of", "json", str(path)],
                           capture_output=True, text=True, timeout=60)
    stream = json.loads(probe.stdout)["streams"][0]
    assert stream["codec_name"] == "h264" and (stream["width"], stream["height"]) == (640, 360)
    assert int(stream["nb_read_frames"]) >= 100  # ~6 s at 25 fps
    assert [a[1] for a in audits if a[2] == CAMERA][:1] == ["ok"] and any("live ended" in a[3] for a in audits)


def test_wrong_password_is_refused_by_the_platform_and_shown(tmp_path: Path) -> None:
    """The platform's verifyauth fails on our digest with a wrong password: 403, no 401 loop, and the
    upstream's state says why."""
    settings = Settings(data_dir=tmp_path, gb_sip_bind="127.0.0.1:0", gb_id=OUR_ID, worker_id="w1")
    svc = Services(settings)
    gb = start_gb(settings, svc.engine)
    store = UpstreamStore(svc.engine, svc.cipher)
    sip_port = free_udp_tcp_port()
    store.add(UP_ID, domain=UP_DOMAIN, host="127.0.0.1", port=sip_port, password="not-the-password", regions=[])
    # SIPp runs as a client only with a first request: a Query it does not need the answer of.
    idle = _scenario("upper platform, idle", _catalog_query() + '  <pause milliseconds="4000"/>\n', lead_ms=0)
    sipp = run_sipp(["-m", "1", "-timeout", "20", f"127.0.0.1:{gb.port}"], scenario=idle, ooc=platform_ooc(PASSWORD),
                    port=sip_port)
    cascade = CascadeService(gb.service.endpoint, store, svc.registry, LiveHubs(), OUR_ID, "127.0.0.1",
                             PortPool(33010, 33019), retry_s=60)
    try:
        async def start() -> None:
            cascade.start(gb.service.message_routes)
        gb.call(start())
        assert sipp.wait(30) == 0, sipp.log
    finally:
        gb.call(cascade.close())
        gb.server.close()
    up = store.get(UP_ID)
    assert up is not None and up.state == "failed" and "403" in up.reason and "password" in up.reason
    registers = (sipp.workdir / "sipp_messages.log").read_text(errors="replace").count("REGISTER sip:")
    assert registers == 2  # one challenge answered once, then the 403 is final: no loop


_ANSWER_MESSAGE = '  <recv request="MESSAGE" timeout="30000"/>\n' + answer()


@dataclass
class _Platform:
    """Our side of a cascade test: a recording camera, the GB server and the cascade service."""

    svc: Services
    sup: Supervisor
    gb: Any
    store: UpstreamStore
    cascade: CascadeService
    sip_port: int
    audits: list[tuple[str, str, str, str]]

    def start_cascade(self) -> None:
        async def start() -> None:
            self.cascade.start(self.gb.service.message_routes)
        self.gb.call(start())

    def close(self) -> None:
        self.gb.call(self.cascade.close())
        self.sup.close()
        self.gb.server.close()


def _platform(tmp_path: Path, camera_server: Any, codec: str = "h264", **settings: Any) -> _Platform:
    cams = camera_server({"/casc": Mount(codec, size=(640, 360), label="casc")})
    svc = Services(Settings(data_dir=tmp_path, gb_sip_bind="127.0.0.1:0", gb_id=OUR_ID, worker_id="w1",
                            snapshots=False, motion=False, **settings))
    svc.registry.add_region(Region(code="340102", name="蜀山区"))
    svc.registry.add_camera(Camera(id=CAMERA, name="东门一号", region="340102", main_url=cams.url("/casc")))
    sup = Supervisor(svc.settings, svc.registry, svc.index, svc.store)
    gb = start_gb(svc.settings, svc.engine)
    sup.live.bind_loop(gb.server.loop)
    sup.start()
    store = UpstreamStore(svc.engine, svc.cipher)
    sip_port = free_udp_tcp_port()
    store.add(UP_ID, domain=UP_DOMAIN, host="127.0.0.1", port=sip_port, password=PASSWORD, regions=["340102"])
    audits: list[tuple[str, str, str, str]] = []
    cascade = CascadeService(gb.service.endpoint, store, svc.registry, sup.live, OUR_ID, "127.0.0.1",
                             PortPool(33020, 33029), audit=lambda *a: audits.append(a), keepalive_s=1.0,
                             index=svc.index, objects=svc.store, bye_grace_s=2.0)
    return _Platform(svc, sup, gb, store, cascade, sip_port, audits)


def _ffprobe(path: Path) -> dict[str, Any]:
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v", "-show_entries",
                            "stream=codec_name,nb_read_frames,width,height:format=duration", "-of", "json", str(path)],
                           capture_output=True, text=True, timeout=60)
    out = json.loads(probe.stdout)
    return {**out["streams"][0], "duration": float(out["format"].get("duration", 0))}


def _recorded(p: _Platform) -> list[Any]:
    """Wait until 8 s of the camera are recorded and indexed; its segment rows."""
    deadline = time.monotonic() + 40
    while True:
        rows = p.svc.index.segments(CAMERA, "main")
        if rows and rows[-1].end_us - rows[0].start_us >= 8_000_000:
            return rows
        assert time.monotonic() < deadline, f"not recorded in time: {rows}"
        time.sleep(0.5)


def _play_back(tmp_path: Path, camera_server: Any, seconds: int, between: str = "",
               codec: str = "h264") -> tuple[bytes, dict[str, Any], list[Any]]:
    """Record the camera (2 s segments) until 8 s are indexed, then have the platform INVITE
    s=Playback of ``seconds`` from 2 s in; ``between`` is its part of the scenario after the ACK
    (before our MediaStatus 121, its 200 and its BYE). Returns the SIPp trace, ffprobe of the PS
    it got, and the audit rows."""
    p = _platform(tmp_path, camera_server, codec, segment_target_seconds=2.0)
    rtp_port = free_udp_tcp_port()
    ps = bytearray()
    try:
        rows = _recorded(p)
        start_s = rows[0].start_us // 1_000_000 + 2
        sdp = _offer(rtp_port, False, "Playback", f"{start_s} {start_s + seconds}")
        scenario = _scenario("upper platform: playback",
                             _invite(sdp) + between + _ANSWER_MESSAGE + _in_dialog("BYE", 39), lead_ms=1000)
        sipp = run_sipp(["-m", "1", "-timeout", "40", f"127.0.0.1:{p.gb.port}"], scenario=scenario,
                        ooc=platform_ooc(PASSWORD), port=p.sip_port)
        sink = threading.Thread(target=_rtp_sink, args=(rtp_port, seconds + 8, ps))
        sink.start()
        p.start_cascade()
        assert sipp.wait(45) == 0, sipp.log
        sink.join()
    finally:
        p.close()
    path = tmp_path / "playback.ps"
    path.write_bytes(bytes(ps))
    return (sipp.workdir / "sipp_messages.log").read_bytes(), _ffprobe(path), p.audits


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_playback_from_our_archive(tmp_path: Path, camera_server, codec: str) -> None:
    """The platform INVITEs s=Playback for 4 s we recorded (t= in Unix seconds, u=CAMERA:0): the PS it
    gets decodes to about 4 s of 25 fps (plus at most the first GOP's pre-roll), then we send
    MediaStatus 121 in the dialog and it hangs up. H.264, and H.265 (hvcC parameter sets, PSM 0x24)."""
    trace, stream, audits = _play_back(tmp_path, camera_server, 4, codec=codec)
    assert b"<NotifyType>121</NotifyType>" in trace and b"s=Playback" in trace
    assert stream["codec_name"] == {"h264": "h264", "h265": "hevc"}[codec]
    assert (stream["width"], stream["height"]) == (640, 360)
    # 4 s at 25 fps, and before it up to one 2 s GOP of pre-roll the decoder needs.
    assert 90 <= int(stream["nb_read_frames"]) <= 100 + 50 + 2, stream
    assert 3.5 <= stream["duration"] <= 6.5, stream
    outcomes = [(a[1], a[3].split()[0]) for a in audits if a[2] == CAMERA]
    assert ("ok", "playback") in outcomes and any("playback ended" in a[3] for a in audits), audits


def test_playback_pause_and_play_by_mansrtsp_info(tmp_path: Path, camera_server) -> None:
    """INFO PAUSE right after the ACK holds a 2 s range for 5 s: the range does not end meanwhile
    (our MediaStatus 121 would be an unexpected message, and SIPp fails the call); INFO PLAY with
    Scale 2.0 resumes it to the end, every frame of it sent."""
    pause = _in_dialog("INFO", 31, "PAUSE MANSRTSP/1.0\n      CSeq: 1\n      PauseTime: now",
                       "Application/MANSRTSP")
    play = _in_dialog("INFO", 32, "PLAY MANSRTSP/1.0\n      CSeq: 2\n      Scale: 2.0\n      Range: npt=now-",
                      "Application/MANSRTSP")
    trace, stream, _ = _play_back(tmp_path, camera_server, 2, pause + '  <pause milliseconds="5000"/>\n' + play)
    assert b"<NotifyType>121</NotifyType>" in trace
    assert 45 <= int(stream["nb_read_frames"]) <= 50 + 50 + 2, stream


def test_playback_of_a_range_with_nothing_recorded_is_refused_with_the_reason(tmp_path: Path, camera_server) -> None:
    p = _platform(tmp_path, camera_server)
    try:
        sdp = _offer(free_udp_tcp_port(), False, "Playback", "1500000000 1500000060")  # 2017: nothing
        sipp = run_sipp(["-m", "1", "-timeout", "20", f"127.0.0.1:{p.gb.port}"],
                        scenario=_scenario("upper platform: playback of nothing", _invite(sdp, "404"), lead_ms=1000),
                        ooc=platform_ooc(PASSWORD), port=p.sip_port)
        p.start_cascade()
        assert sipp.wait(30) == 0, sipp.log
    finally:
        p.close()
    trace = (sipp.workdir / "sipp_messages.log").read_text(errors="replace")
    assert "SIP/2.0 404 Not Found (camera 34010200001320000001 has no recordings between 2017-07-14" in trace
    assert [a[1] for a in p.audits if a[2] == CAMERA] == ["denied"]


def _ask(p: _Platform, queries: Callable[[], str]) -> dict[str, str]:
    """Run the platform's ``queries()`` (``_catalog_query`` blocks; made once the test's setup is
    done) against the cascade, then close it; the Response MESSAGEs it got, by SN."""
    try:
        scenario = _scenario("upper platform: queries", queries() + '  <pause milliseconds="1500"/>\n', lead_ms=500)
        sipp = run_sipp(["-m", "1", "-timeout", "20", f"127.0.0.1:{p.gb.port}"], scenario=scenario,
                        ooc=platform_ooc(PASSWORD), port=p.sip_port)
        p.start_cascade()
        assert sipp.wait(30) == 0, sipp.log
    finally:
        p.close()
    trace = (sipp.workdir / "sipp_messages.log").read_bytes().decode("gb18030", "replace")
    return {m.split("<SN>")[1].split("<")[0]: m for m in trace.split("MESSAGE sip:")
            if "<Response>" in m and "<SN>" in m}


def test_device_info_and_status_queries_get_real_answers(tmp_path: Path, camera_server) -> None:
    """DeviceInfo of the platform (our GB_ID), DeviceStatus of a live camera of its region, and a
    DeviceStatus of a camera it may not see: each answered 200, then by a Response MESSAGE."""
    p = _platform(tmp_path, camera_server)

    def queries() -> str:
        deadline = time.monotonic() + 30
        while not ((hub := p.sup.live.get(CAMERA, "main")) is not None and hub.online):
            assert time.monotonic() < deadline, "the camera never went live"
            time.sleep(0.2)
        return (_catalog_query("DeviceInfo", OUR_ID, 81) + _catalog_query("DeviceStatus", CAMERA, 82)
                + _catalog_query("DeviceStatus", OTHER, 83))
    answers = _ask(p, queries)
    info, status, other = answers["81"], answers["82"], answers["83"]
    for tag in (f"<DeviceID>{OUR_ID}</DeviceID>", "<Result>OK</Result>", "<Manufacturer>sharpeyes</Manufacturer>",
                "<Model>county platform</Model>", "<Firmware>0.1.0</Firmware>", "<Channel>1</Channel>"):
        assert tag in info, info
    for tag in (f"<DeviceID>{CAMERA}</DeviceID>", "<Online>ONLINE</Online>", "<Status>OK</Status>",
                "<Encode>ON</Encode>", "<Record>ON</Record>", "<DeviceTime>20"):
        assert tag in status, status
    assert "<Result>ERROR</Result>" in other and "<CmdType>DeviceStatus</CmdType>" in other


def _options(pause_ms: int) -> str:
    """SIPp runs as a client only with a first request: an OPTIONS (any endpoint answers 200), then
    ``pause_ms`` of its out-of-call scenario answering what we send it."""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="upper platform, idle">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:{OUR_ID}@3402000000 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{UP_ID}@{UP_DOMAIN}>;tag=o[call_number]
      To: <sip:{OUR_ID}@3402000000>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="{pause_ms}"/>
</scenario>
"""


def test_upstream_added_and_removed_while_running(tmp_path: Path) -> None:
    """``gb upstream add`` (a row in gb_upstreams) while the cascade runs: it registers without a
    restart; ``remove``: it unregisters (Expires: 0) and the platform's MESSAGEs are no longer ours."""
    settings = Settings(data_dir=tmp_path, gb_sip_bind="127.0.0.1:0", gb_id=OUR_ID, worker_id="w1")
    svc = Services(settings)
    gb = start_gb(settings, svc.engine)
    store = UpstreamStore(svc.engine, svc.cipher)
    cascade = CascadeService(gb.service.endpoint, store, svc.registry, LiveHubs(), OUR_ID, "127.0.0.1",
                             PortPool(33030, 33039), keepalive_s=1.0, poll_s=0.3)
    sip_port = free_udp_tcp_port()
    sipp = run_sipp(["-m", "1", "-timeout", "30", f"127.0.0.1:{gb.port}"], scenario=_options(7000),
                    ooc=platform_ooc(PASSWORD), port=sip_port)
    try:
        async def start() -> None:
            cascade.start(gb.service.message_routes)
        gb.call(start())
        assert UP_ID not in cascade.links
        store.add(UP_ID, domain=UP_DOMAIN, host="127.0.0.1", port=sip_port, password=PASSWORD, regions=[])
        deadline = time.monotonic() + 10
        while (up := store.get(UP_ID)) is None or up.state != "registered":
            assert time.monotonic() < deadline, f"not registered after the add: {up}"
            time.sleep(0.1)
        assert UP_ID in gb.service.message_routes
        store.remove(UP_ID)
        deadline = time.monotonic() + 10
        while UP_ID in cascade.links or UP_ID in gb.service.message_routes:
            assert time.monotonic() < deadline, "still linked after the remove"
            time.sleep(0.1)
        assert sipp.wait(30) == 0, sipp.log
    finally:
        sipp.stop()
        gb.call(cascade.close())
        gb.server.close()
    every = (sipp.workdir / "sipp_messages.log").read_text(errors="replace").split("REGISTER sip:")[1:]
    registers = [m for m in every if "Authorization:" in m]
    assert [("Expires: 0" in m) for m in registers] == [False, True], registers
    # One registration: one Call-ID for all of them, the unregister included, and CSeq rising.
    heads = []
    for m in every:
        lines = [line.rstrip("\r") for line in m.split("\n")[1:]]
        head = lines[:lines.index("")] if "" in lines else lines  # this request's own headers
        heads.append(dict(line.split(": ", 1) for line in head if ": " in line))
    assert len({h["Call-ID"].strip() for h in heads}) == 1, [
        (h["Call-ID"], h["CSeq"], h.get("Expires"), "Authorization" in h) for h in heads]
    numbers = [int(h["CSeq"].split()[0]) for h in heads]
    assert numbers == sorted(set(numbers)), numbers


def test_record_info_query_lists_our_recorded_runs(tmp_path: Path, camera_server) -> None:
    """The platform's RecordInfo for our camera (times in local time, as GB/T 28181 has them) is
    answered with the run we recorded; for a camera it may not see, an empty list."""
    p = _platform(tmp_path, camera_server, segment_target_seconds=2.0)
    rows: list[Any] = []

    def queries() -> str:
        rows.extend(_recorded(p))
        start, end = (gb_local_time(t, "Asia/Shanghai")[:19] for t in (rows[0].start_us - 60_000_000,
                                                                        rows[-1].end_us + 60_000_000))
        times = f"<StartTime>{start}</StartTime>\n<EndTime>{end}</EndTime>\n<Type>all</Type>\n"
        return _catalog_query("RecordInfo", CAMERA, 91, times) + _catalog_query("RecordInfo", OTHER, 92, times)
    answers = _ask(p, queries)
    ours, other = answers["91"], answers["92"]
    first = gb_local_time(rows[0].start_us, "Asia/Shanghai")[:19]
    assert "<SumNum>1</SumNum>" in ours and f"<StartTime>{first}</StartTime>" in ours, ours
    assert "<Name>东门一号</Name>" in ours and "<Type>time</Type>" in ours
    assert "<SumNum>0</SumNum>" in other, other
