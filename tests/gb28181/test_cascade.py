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
from pathlib import Path

import pytest

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.gb28181.media.receiver import PortPool
from ingest.live.hub import LiveHubs
from ingest.supervisor import Supervisor
from sharpeyes.services import Services
from storage.index.gb_upstreams import UpstreamStore
from streams.cascade.service import CascadeService
from tests.gb28181.conftest import start_gb
from tests.support.cameras import Mount
from tests.support.sipp import free_udp_tcp_port, needs_sipp, run_sipp

pytestmark = needs_sipp

UP_ID = "34000000002000000001"
UP_DOMAIN = "3400000000"
OUR_ID = "34020000002000000001"
CAMERA = "34010200001320000001"
OTHER = "34019900001320000002"  # in a region the city was not given
PASSWORD = "City-link-pass-1"


def platform_scenario(rtp_port: int, tcp: bool = False) -> str:
    """The platform's own requests (SIPp as a client): its Catalog query, then an INVITE, then BYE."""
    msg = (f'<?xml version="1.0" encoding="GB2312"?>\n<Query>\n<CmdType>Catalog</CmdType>\n<SN>77</SN>\n'
           f"<DeviceID>{OUR_ID}</DeviceID>\n</Query>")
    proto, setup = ("TCP/RTP/AVP", "a=setup:passive\na=connection:new\n") if tcp else ("RTP/AVP", "")
    sdp = (f"v=0\no={UP_ID} 0 0 IN IP4 127.0.0.1\ns=Play\nc=IN IP4 127.0.0.1\nt=0 0\n"
           f"m=video {rtp_port} {proto} 96\na=recvonly\na=rtpmap:96 PS/90000\n{setup}y=0100000001\n")
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="upper platform">
  <pause milliseconds="3000"/>
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:{OUR_ID}@3402000000 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{UP_ID}@{UP_DOMAIN}>;tag=q[call_number]
      To: <sip:{OUR_ID}@3402000000>
      Call-ID: [call_id]
      CSeq: 20 MESSAGE
      Content-Type: Application/MANSCDP+xml
      Max-Forwards: 70
      Content-Length: [len]

      {msg}
    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="3000"/>
  <send retrans="500">
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
  <recv response="200" rtd="true"/>
  <send>
    <![CDATA[
      ACK sip:{CAMERA}@3402000000 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{UP_ID}@{UP_DOMAIN}>;tag=inv[call_number]
      To: <sip:{CAMERA}@3402000000>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 30 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="6000"/>
  <send retrans="500">
    <![CDATA[
      BYE sip:{CAMERA}@3402000000 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{UP_ID}@{UP_DOMAIN}>;tag=inv[call_number]
      To: <sip:{CAMERA}@3402000000>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 31 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="500"/>
</scenario>
"""


def platform_ooc(password: str) -> str:
    """What we send it: REGISTER (challenged, the digest checked by SIPp's verifyauth: 200 or 403),
    keepalive and Catalog MESSAGEs (200)."""
    ok = """  <send>
    <![CDATA[
      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:];tag=up[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      {extra}Content-Length: 0

    ]]>
  </send>
"""
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="upper platform: what we send it">
  <recv request="MESSAGE" optional="true" next="message"/>
  <recv request="REGISTER"/>
{ok.format(status="401 Unauthorized", extra=f'WWW-Authenticate: Digest realm="{UP_DOMAIN}", nonce="a1b2c3d4e5", '
           'algorithm=MD5' + chr(10) + "      ")}
  <recv request="REGISTER" crlf="true">
    <action>
      <verifyauth assign_to="authvalid" username="{OUR_ID}" password="{password}"/>
    </action>
  </recv>
  <nop hide="true" test="authvalid" next="good"/>
{ok.format(status="403 Forbidden", extra="")}
  <nop next="end"/>
  <label id="good"/>
{ok.format(status="200 OK", extra="Expires: 3600" + chr(10) + "      ")}
  <nop next="end"/>
  <label id="message"/>
{ok.format(status="200 OK", extra="")}
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
def test_upper_platform_registers_us_gets_catalog_and_our_ps(tmp_path: Path, camera_server, index_engine,
                                                             tcp: bool) -> None:
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


def test_wrong_password_is_refused_by_the_platform_and_shown(tmp_path: Path, index_engine) -> None:
    """The platform's verifyauth fails on our digest with a wrong password: 403, no 401 loop, and the
    upstream's state says why."""
    settings = Settings(data_dir=tmp_path, gb_sip_bind="127.0.0.1:0", gb_id=OUR_ID, worker_id="w1")
    svc = Services(settings)
    gb = start_gb(settings, svc.engine)
    store = UpstreamStore(svc.engine, svc.cipher)
    sip_port = free_udp_tcp_port()
    store.add(UP_ID, domain=UP_DOMAIN, host="127.0.0.1", port=sip_port, password="not-the-password", regions=[])
    # SIPp runs as a client only with a first request: a Query it does not need the answer of.
    idle = platform_scenario(free_udp_tcp_port()).split("  <pause milliseconds=\"3000\"/>")
    idle = idle[0] + idle[1] + '  <pause milliseconds="4000"/>\n</scenario>\n'
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
