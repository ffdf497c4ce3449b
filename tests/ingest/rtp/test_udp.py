"""UDP receive: an 8 MiB receive buffer, even/odd port pairs, and a keyframe-sized burst received whole."""

from __future__ import annotations

import asyncio
import socket

from ingest.rtp.packet import RtpPacket, parse_rtp
from ingest.rtp.udp import RTP_RCVBUF, open_rtp_rtcp_pair, open_udp_receiver


def test_receiver_gets_the_big_buffer_and_a_burst_of_packets_unsent_to_anyone_else() -> None:
    async def main() -> tuple[int, list[int]]:
        seqs: list[int] = []
        done = asyncio.Event()

        def on_datagram(data: bytes, addr: tuple[str, int]) -> None:
            seqs.append(parse_rtp(data).sequence)
            if len(seqs) == 400:
                done.set()

        rx = await open_udp_receiver("127.0.0.1", 0, on_datagram)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            # A 1080p IDR at 4 Mbit/s: ~400 packets of 1400 B sent back to back, with no reads between.
            for i in range(400):
                tx.sendto(RtpPacket(96, i, 0, 1, bytes(1400)).to_bytes(), ("127.0.0.1", rx.port))
        await asyncio.wait_for(done.wait(), 10)
        rx.close()
        return rx.rcvbuf, seqs

    rcvbuf, seqs = asyncio.run(main())
    assert rcvbuf >= RTP_RCVBUF  # the kernel reports twice what it was asked for
    assert seqs == list(range(400))


def test_rtp_rtcp_pair_is_even_then_odd() -> None:
    async def main() -> tuple[int, int]:
        rtp, rtcp = await open_rtp_rtcp_pair("127.0.0.1", lambda d, a: None, lambda d, a: None)
        ports = rtp.port, rtcp.port
        rtp.close()
        rtcp.close()
        return ports

    a, b = asyncio.run(main())
    assert a % 2 == 0 and b == a + 1
