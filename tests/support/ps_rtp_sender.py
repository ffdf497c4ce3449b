"""A test-only RTP framer: a PS byte stream on stdin, RTP out (UDP, or TCP with RFC 4571 framing).

It plays the media half of a GB/T 28181 device in tests, with an independent PS muxer in front
of it (GStreamer ``mpegpsmux`` or ffmpeg ``-f mpeg``, paced in real time). It does RTP framing
only: it never parses the PS, so packet boundaries fall wherever the bytes do (as they may from a
real device), the timestamp is the 90 kHz wall clock at read time and the marker bit ends each
read. Whatever the receiver gets right, it gets right from the PS alone.

    gst-launch-1.0 -q filesrc location=a.mp4 ! qtdemux ! h264parse ! mpegpsmux ! fdsink fd=1 sync=true \\
      | python -m tests.support.ps_rtp_sender --udp 127.0.0.1:30000 --ssrc 0100000001

Transports: ``--udp HOST:PORT``; ``--tcp-connect HOST:PORT`` (the receiver listens: our "TCP
passive"); ``--tcp-listen PORT`` (the receiver connects: our "TCP active"), which prints
``listening PORT`` on stderr once bound (``--tcp-listen 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

MAX_PAYLOAD = 1400
PAYLOAD_TYPE = 96


class RtpFramer:
    """RTP packets (RFC 3550 fixed header, no CSRC) from byte chunks."""

    def __init__(self, ssrc: int, payload_type: int = PAYLOAD_TYPE, seq: int = 0) -> None:
        self.ssrc = ssrc & 0xFFFFFFFF
        self.payload_type = payload_type
        self.seq = seq & 0xFFFF
        self._t0 = time.monotonic()

    def packets(self, chunk: bytes) -> list[bytes]:
        ts = int((time.monotonic() - self._t0) * 90000) & 0xFFFFFFFF
        out = []
        for off in range(0, len(chunk), MAX_PAYLOAD):
            last = off + MAX_PAYLOAD >= len(chunk)
            header = struct.pack("!BBHII", 0x80, (0x80 if last else 0) | self.payload_type, self.seq, ts, self.ssrc)
            out.append(header + chunk[off : off + MAX_PAYLOAD])
            self.seq = (self.seq + 1) & 0xFFFF
        return out


def send(source: BinaryIO, framer: RtpFramer, udp: tuple[str, int] | None = None,
         tcp: socket.socket | None = None) -> int:
    """Frame everything ``source`` gives until EOF; returns the packets sent."""
    usock = None
    if udp is not None:
        usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        usock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
    sent = 0
    read = getattr(source, "read1", source.read)
    while True:
        chunk = read(65536)
        if not chunk:
            return sent
        for pkt in framer.packets(chunk):
            if usock is not None and udp is not None:
                usock.sendto(pkt, udp)
            elif tcp is not None:
                tcp.sendall(struct.pack("!H", len(pkt)) + pkt)  # RFC 4571
            sent += 1


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--udp")
    group.add_argument("--tcp-connect")
    group.add_argument("--tcp-listen", type=int)
    ap.add_argument("--ssrc", type=int, default=0)
    ap.add_argument("--pt", type=int, default=PAYLOAD_TYPE)
    args = ap.parse_args(argv)
    framer = RtpFramer(args.ssrc, args.pt)
    source = sys.stdin.buffer
    try:
        if args.udp:
            send(source, framer, udp=_hostport(args.udp))
        elif args.tcp_connect:
            with socket.create_connection(_hostport(args.tcp_connect), timeout=10) as conn:
                conn.settimeout(None)
                send(source, framer, tcp=conn)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
                srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                srv.bind(("127.0.0.1", args.tcp_listen))
                srv.listen(1)
                print(f"listening {srv.getsockname()[1]}", file=sys.stderr, flush=True)
                conn, _ = srv.accept()
                with conn:
                    send(source, framer, tcp=conn)
    except (BrokenPipeError, ConnectionError):
        return 1
    return 0


# -- peers: an independent PS muxer piped into the framer --------------------------------------------

def ps_command(kind: str, media: Path, loop: bool = False) -> list[str]:
    """The command of an independent, real-time paced PS source writing to stdout.

    ``kind``: ``gst`` (GStreamer mpegpsmux, H.264 from an MP4, with a PSM), ``ffmpeg`` (ffmpeg
    ``-f mpeg`` from an Annex-B file, H.264 or H.265, no PSM; ``loop`` repeats it, timestamps
    running on)."""
    if kind == "gst":
        return ["gst-launch-1.0", "-q", "filesrc", f"location={media}", "!", "qtdemux", "!", "h264parse", "!",
                "mpegpsmux", "!", "fdsink", "fd=1", "sync=true"]
    if kind == "ffmpeg":
        if loop:
            # FFmpeg cannot seek in a raw Annex-B file ("Seek to start failed"): -stream_loop on
            # one just ends the stream at the clip's end. Loop an MPEG-TS copy instead, whose
            # timestamps FFmpeg carries on across each pass.
            return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                    "-i", str(_seekable(media)), "-c", "copy", "-f", "mpeg", "pipe:1"]
        return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", *_raw_input(media),
                "-c", "copy", "-f", "mpeg", "pipe:1"]
    raise ValueError(kind)


def _raw_input(media: Path) -> list[str]:
    fmt = "hevc" if media.suffix in (".h265", ".hevc") else "h264"
    return ["-f", fmt, "-r", "25", "-i", str(media)]


def _seekable(media: Path) -> Path:
    """``media`` (a raw Annex-B file at 25 fps) copied into MPEG-TS beside it, made once."""
    if media.suffix not in (".h264", ".264", ".h265", ".hevc"):
        return media  # a container FFmpeg can seek in already
    ts = media.with_suffix(media.suffix + ".ts")
    if not ts.exists():
        part = ts.with_suffix(f".{os.getpid()}.part")
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *_raw_input(media), "-c", "copy",
                        "-f", "mpegts", str(part)], check=True, timeout=120)
        part.replace(ts)
    return ts


def start_device_media(kind: str, media: Path, transport: str, address: tuple[str, int] | None,
                       ssrc: int = 0, loop: bool = False) -> tuple[subprocess.Popen, subprocess.Popen, int | None]:
    """Start ``ps_command(kind)`` piped into this framer. ``transport``: ``udp`` and ``tcp-connect``
    send to ``address``; ``tcp-listen`` listens and returns its port third. Stop both with ``stop``."""
    source = subprocess.Popen(ps_command(kind, media, loop), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    args = [sys.executable, "-m", "tests.support.ps_rtp_sender", "--ssrc", str(ssrc)]
    if transport == "tcp-listen":
        args += ["--tcp-listen", "0"]
    else:
        assert address is not None
        args += [f"--{transport}", f"{address[0]}:{address[1]}"]
    root = Path(__file__).resolve().parents[2]
    sender = subprocess.Popen(args, stdin=source.stdout, stderr=subprocess.PIPE, cwd=root,
                              env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert source.stdout is not None
    source.stdout.close()  # the sender holds it now
    port = None
    if transport == "tcp-listen":
        assert sender.stderr is not None
        line = sender.stderr.readline().decode()
        port = int(line.split()[1])
    return source, sender, port


def stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(argv: list[str]) -> int:
    """``launch --pidfile F --kind K --media M [--seconds S] [--loop] (--udp H:P | --tcp-connect H:P |
    --tcp-listen P) [--ssrc N]``: start source | framer in a new process group, append its id to
    F, and return at once (for a SIPp ``<exec>``: the device starts sending when invited)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--kind", required=True)
    ap.add_argument("--media", required=True)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--loop", action="store_true")
    args, rest = ap.parse_known_args(argv)
    source = ps_command(args.kind, Path(args.media), args.loop)
    if args.seconds:
        source = ["timeout", str(args.seconds), *source]
    root = Path(__file__).resolve().parents[2]
    framer = [sys.executable, "-m", "tests.support.ps_rtp_sender", *rest]
    line = " ".join(shlex.quote(a) for a in source) + " | " + " ".join(shlex.quote(a) for a in framer)
    proc = subprocess.Popen(["sh", "-c", line], cwd=root, start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    with open(args.pidfile, "a") as f:
        f.write(f"{proc.pid}\n")
    return 0


def kill_launched(pidfile: Path) -> None:
    """End every process group ``launch`` recorded in ``pidfile``."""
    if not pidfile.exists():
        return
    for line in pidfile.read_text().split():
        try:
            os.killpg(int(line), signal.SIGTERM)
        except (ProcessLookupError, PermissionError, ValueError):
            pass


if __name__ == "__main__":
    if sys.argv[1:2] == ["launch"]:
        raise SystemExit(launch(sys.argv[2:]))
    raise SystemExit(main())
