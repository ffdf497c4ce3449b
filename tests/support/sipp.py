"""SIPp (Debian ``sip-tester``) as an independent SIP peer: a GB/T 28181 device, a UAS, a UAC.

``run_sipp(args, scenario=..., ooc=...)`` starts ``sipp`` on 127.0.0.1 with the scenario
text written to a file (bytes pass through unchanged, so GB2312 bodies can be written in),
and returns a ``SippProcess`` to ``wait()`` on; its ``log`` has SIPp's own messages and
error log for assertion messages. See /work/shared/notes/peers.md for SIPp's traps.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SIPP = shutil.which("sipp")
needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def answer(status: str = "200 OK", *, to_tag: str = "", extra: str = "") -> str:
    """A scenario's ``<send>`` of a response to the last request received: ``to_tag`` is
    appended to its To (``;tag=[call_number]`` for a request outside a dialog), ``extra`` is
    header lines (each ending in a newline) before Content-Length."""
    return f"""  <send>
    <![CDATA[
      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:]{to_tag}
      [last_Call-ID:]
      [last_CSeq:]
      {extra}Content-Length: 0

    ]]>
  </send>
"""


@dataclass
class SippProcess:
    proc: subprocess.Popen[bytes]
    workdir: Path

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"sipp did not finish in {timeout} s\n{self.log}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def log(self) -> str:
        out = [self.proc.stdout.read().decode(errors="replace") if self.proc.stdout and self.proc.poll() is not None
               else ""]
        for f in sorted(self.workdir.glob("*")):
            if f.suffix in (".log",) or f.name.endswith("_errors.log"):
                out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)


def run_sipp(args: list[str], *, scenario: bytes | str | None = None, ooc: bytes | str | None = None,
             port: int | None = None) -> SippProcess:
    """Start sipp with ``args`` (remote address last, as sipp wants it)."""
    assert SIPP is not None
    workdir = Path(tempfile.mkdtemp(prefix="sipp-"))
    cmd = [SIPP, "-i", "127.0.0.1", "-p", str(port or free_udp_tcp_port()), "-nostdin",
           "-trace_err", "-error_file", str(workdir / "sipp_errors.log"), "-trace_msg",
           "-message_file", str(workdir / "sipp_messages.log")]
    if scenario is not None:
        path = workdir / "scenario.xml"
        path.write_bytes(scenario.encode("utf-8") if isinstance(scenario, str) else scenario)
        cmd += ["-sf", str(path)]
    if ooc is not None:
        path = workdir / "ooc.xml"
        path.write_bytes(ooc.encode("utf-8") if isinstance(ooc, str) else ooc)
        cmd += ["-oocsf", str(path)]
    cmd += args
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return SippProcess(proc, workdir)
