"""A GB/T 28181 device's INVITE side for tests: SIPp answering our INVITEs, and an independent
PS source (mpegpsmux or ffmpeg -f mpeg) framed by ``ps_rtp_sender`` starting when invited.

SIPp runs as a UAS with a scenario written per test (ids inside the file: shared/notes/peers.md).
``answer``:
- ``"200"``: 200 OK with a PS SDP answer; on the ACK, SIPp ``<exec>``s the media launcher towards
  the address and port of our offer (UDP, TCP passive: the device connects; TCP active: the
  device listens on ``listen_port`` and answers it in its SDP);
- ``"488"``: 488 Not Acceptable Here; ``"silent"``: never answers (our INVITE times out).
``ssrc``: the answer's y=: ``"offer"`` echoes ours, or a value of the device's own (a lower platform
choosing its SSRC); ``media_ssrc``: what the RTP carries if not that (Dahua: ``"0"``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cameras import free_port
from tests.support.ps_rtp_sender import kill_launched

ROOT = Path(__file__).resolve().parents[2]

_HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="gb device">\n'
_RECV_INVITE = """  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="m=video ([0-9]+)" search_in="body" check_it="true" assign_to="m,port"/>
      <ereg regexp="c=IN IP4 ([0-9.]+)" search_in="body" check_it="true" assign_to="m,host"/>
      <ereg regexp="y=([0-9]+)" search_in="body" check_it="true" assign_to="m,ssrc"/>
      <ereg regexp="Subject: ([0-9]+)" search_in="msg" check_it="true" assign_to="m,chan"/>
    </action>
  </recv>
  <nop><action><log message="offer [$host]:[$port] ssrc [$ssrc] channel [$chan] [$m]"/></action></nop>
"""

_200 = """  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]dev[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[$chan]@[local_ip]:[local_port]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=[$chan] 0 0 IN IP4 [local_ip]
s=Play
c=IN IP4 [local_ip]
t=0 0
m=video {port} {proto} 96
a=sendonly
a=rtpmap:96 PS/90000
i=offer [$host] [$port]
{setup}y={ssrc}
    ]]>
  </send>
  <recv request="ACK">
    <action>
      <exec command="{media}"/>
    </action>
  </recv>
  <recv request="BYE"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
"""

_488 = """  <send>
    <![CDATA[
SIP/2.0 488 Not Acceptable Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]dev[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
"""

_SILENT = """  <pause milliseconds="60000"/>
"""


@dataclass
class SippDevice:
    """SIPp as the SIP side of a device (UDP on 127.0.0.1), answering every INVITE the same way."""

    workdir: Path
    transport: str = "udp"  # the media transport: udp | tcp-passive | tcp-active
    answer: str = "200"
    ps_kind: str = "gst"
    media: Path | None = None
    ssrc: str = "offer"  # what the SDP answer's y= says
    media_ssrc: str = ""  # what the RTP carries ("": the answer's)
    media_seconds: float = 0
    loop: bool = False
    calls: int = 20
    port: int = field(default_factory=free_port)
    listen_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def pidfile(self) -> Path:
        return self.workdir / "media.pids"

    def scenario(self) -> str:
        if self.answer == "488":
            body = _RECV_INVITE + _488
        elif self.answer == "silent":
            body = _RECV_INVITE + _SILENT
        else:
            assert self.media is not None
            launch = [sys.executable, "-m", "tests.support.ps_rtp_sender", "launch", "--pidfile", str(self.pidfile),
                      "--kind", self.ps_kind, "--media", str(self.media)]
            if self.media_seconds:
                launch += ["--seconds", str(self.media_seconds)]
            if self.loop:
                launch.append("--loop")
            ssrc = "[$ssrc]" if self.ssrc == "offer" else self.ssrc
            launch += ["--ssrc", self.media_ssrc or ssrc]
            if self.transport == "udp":
                launch += ["--udp", "[$host]:[$port]"]
            elif self.transport == "tcp-passive":
                launch += ["--tcp-connect", "[$host]:[$port]"]
            else:
                launch += ["--tcp-listen", str(self.listen_port)]
            tcp = self.transport != "udp"
            body = _RECV_INVITE + _200.format(
                port=self.listen_port if self.transport == "tcp-active" else 15060,
                proto="TCP/RTP/AVP" if tcp else "RTP/AVP",
                setup=("a=setup:passive\n" if self.transport == "tcp-active" else
                       "a=setup:active\n" if tcp else "") + ("a=connection:new\n" if tcp else ""),
                ssrc="[$ssrc]" if self.ssrc == "offer" else self.ssrc,
                media=" ".join(launch),
            )
        return _HEAD + body + "</scenario>\n"

    def start(self) -> "SippDevice":
        path = self.workdir / f"device-{self.port}.xml"
        path.write_text(self.scenario())
        self.proc = subprocess.Popen(
            ["sipp", "-sf", str(path), "-i", "127.0.0.1", "-p", str(self.port), "-t", "u1", "-m", str(self.calls),
             "-nostdin", "-trace_err", "-error_file", str(self.workdir / "sipp-errors.log")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin",
                                                                              "PYTHONPATH": str(ROOT)})
        time.sleep(0.3)
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise RuntimeError(f"sipp exited at once: {err}")
        return self

    def stop_media(self) -> None:
        kill_launched(self.pidfile)

    def stop(self) -> None:
        self.stop_media()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
