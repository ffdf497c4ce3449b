"""Benchmark: CPU of the GB/T 28181 SIP server per REGISTER (with digest) and per keepalive.

    PYTHONPATH=. python tests/bench/gb_sip.py [--devices 1000] [--rounds 5] [--rate 500]

The server (``GbService`` on its loop thread, SQLite index, queries after registration off so
only REGISTER and keepalive are measured) runs in a subprocess; this process plays the devices
from raw UDP sockets and computes digests itself. CPU is the server process's (from /proc),
over each phase. A county of 5,000 devices at the default 60 s keepalive sends 83 keepalives/s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.procstat import cpu_seconds, peak_rss_bytes

DOMAIN, SERVER = "3402000000", "34020000002000000001"
PASSWORD = "Bench-password-1"


def serve(data_dir: str) -> None:
    from config.settings import Settings
    from ingest.gb28181.registrar import RegisterRateLimit
    from ingest.gb28181.service import GbServer, GbService
    from sharpeyes.services import Services
    from storage.index.gb_devices import GbDeviceStore

    settings = Settings(data_dir=Path(data_dir), gb_sip_bind="127.0.0.1:0", gb_password=PASSWORD, worker_id="bench")
    svc = Services(settings)
    service = GbService(settings, svc.registry, GbDeviceStore(svc.engine, svc.cipher), query_on_register=False,
                        rate_limit=RegisterRateLimit(burst=100, rate=100, host_burst=10**6, host_rate=10**6))
    server = GbServer(service)
    server.start()
    print(json.dumps({"port": service.endpoint.port}), flush=True)
    sys.stdin.read()  # until the bench closes our stdin
    server.close()


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()  # noqa: S324


def _register(dev: str, port: int, cseq: int, auth: str = "") -> bytes:
    return (f"REGISTER sip:{SERVER}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bK{dev}{cseq}\r\n"
            f"From: <sip:{dev}@{DOMAIN}>;tag={dev}\r\nTo: <sip:{dev}@{DOMAIN}>\r\nCall-ID: reg-{dev}\r\n"
            f"CSeq: {cseq} REGISTER\r\nContact: <sip:{dev}@127.0.0.1:{port}>\r\nExpires: 3600\r\n{auth}"
            "Content-Length: 0\r\n\r\n").encode()


def _keepalive(dev: str, port: int, n: int) -> bytes:
    body = (f'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{n}</SN>\r\n'
            f"<DeviceID>{dev}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>\r\n").encode()
    return (f"MESSAGE sip:{SERVER}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bKka{dev}{n}\r\n"
            f"From: <sip:{dev}@{DOMAIN}>;tag=k{dev}\r\nTo: <sip:{SERVER}@{DOMAIN}>\r\nCall-ID: ka-{dev}-{n}\r\n"
            f"CSeq: {n} MESSAGE\r\nContent-Type: Application/MANSCDP+xml\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def _wait_all(socks: list[socket.socket], want: int, timeout: float = 60.0) -> dict[int, int]:
    """Read responses until ``want`` arrived; count status codes."""
    got: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    n = 0
    while n < want and time.monotonic() < deadline:
        ready, _, _ = select.select(socks, [], [], 0.5)
        for s in ready:
            data = s.recv(65535)
            status = int(data.split(b" ", 2)[1]) if data.startswith(b"SIP/2.0") else 0
            got[status] = got.get(status, 0) + 1
            n += 1
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=500.0, help="keepalives per second")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve)
    data_dir = tempfile.mkdtemp(prefix="gb-bench-")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("SHARPEYES_SECRET_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "tests.bench.gb_sip", "--serve", data_dir], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    port = json.loads(proc.stdout.readline())["port"]
    devs = [f"340200000013200{i:05d}" for i in range(args.devices)]
    socks = []
    for _ in devs:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    target = ("127.0.0.1", port)
    idle = cpu_seconds(proc.pid)
    time.sleep(2.0)
    idle_rate = (cpu_seconds(proc.pid) - idle) / 2.0

    # Phase 1: REGISTER, 401, REGISTER with digest, 200.
    c0, t0 = cpu_seconds(proc.pid), time.monotonic()
    for dev, s in zip(devs, socks):
        s.sendto(_register(dev, s.getsockname()[1], 1), target)
    challenges = {}
    for s in socks:
        data = s.recv(65535)
        challenges[s] = re.search(rb'nonce="([^"]+)"', data).group(1).decode()  # type: ignore[union-attr]
    for dev, s in zip(devs, socks):
        uri = f"sip:{SERVER}@{DOMAIN}"
        ha1, ha2 = _md5(f"{dev}:{DOMAIN}:{PASSWORD}"), _md5(f"REGISTER:{uri}")
        nonce = challenges[s]
        resp = _md5(f"{ha1}:{nonce}:{ha2}")  # no qop, as many GB devices answer
        auth = (f'Authorization: Digest username="{dev}", realm="{DOMAIN}", nonce="{nonce}", uri="{uri}", '
                f'response="{resp}", algorithm=MD5\r\n')
        s.sendto(_register(dev, s.getsockname()[1], 2, auth), target)
    reg = _wait_all(socks, len(devs))
    reg_cpu, reg_wall = cpu_seconds(proc.pid) - c0, time.monotonic() - t0

    # Phase 2: keepalives at a paced rate.
    c1, t1 = cpu_seconds(proc.pid), time.monotonic()
    sent = 0
    for r in range(args.rounds):
        for dev, s in zip(devs, socks):
            s.sendto(_keepalive(dev, s.getsockname()[1], 100 + r), target)
            sent += 1
            lag = t1 + sent / args.rate - time.monotonic()
            if lag > 0:
                time.sleep(lag)
    ka = _wait_all(socks, sent)
    ka_wall = time.monotonic() - t1
    ka_cpu = cpu_seconds(proc.pid) - c1 - idle_rate * ka_wall
    rss = peak_rss_bytes(proc.pid)
    proc.stdin.close()
    proc.wait(30)
    per_ka = ka_cpu / max(1, sent)
    print(json.dumps({
        "devices": len(devs), "register_answers": reg,
        "register_cpu_ms_per_device": round(reg_cpu / len(devs) * 1000, 3),
        "register_wall_s": round(reg_wall, 2), "keepalives": sent, "keepalive_answers": ka,
        "keepalive_rate_per_s": args.rate, "keepalive_cpu_ms_each": round(per_ka * 1000, 3),
        "idle_cpu_percent": round(idle_rate * 100, 2),
        "core_percent_for_5000_devices_at_60s": round(per_ka * 5000 / 60 * 100, 2),
        "server_peak_rss_mib": round(rss / 2**20, 1)}, indent=2))


if __name__ == "__main__":
    main()
