"""SipEndpoint over real sockets: retransmission, timeouts, absorbed retransmissions,
rport/received, digest as a client, TCP framing, bad input, and INVITE dialogs with SIPp."""

from __future__ import annotations

import asyncio
import hashlib
import socket

from ingest.gb28181.sip import Incoming, Peer, SipEndpoint, SipRequest, SipResponse, Timers
from ingest.gb28181.sip.digest import parse_digest
from ingest.gb28181.sip.message import parse_message, response_to
from tests.support.sipp import needs_sipp, run_sipp

FAST = Timers(t1=0.02, t2=0.16, t4=0.2)
US = "34020000002000000001"


def _endpoint(**kw: object) -> SipEndpoint:
    return SipEndpoint(user=US, domain="3402000000", host="127.0.0.1", port=0, timers=FAST, **kw)  # type: ignore[arg-type]


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def _recv(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), timeout)


def _request(method: str, branch: str, *, via_host: str = "127.0.0.1", extra: str = "", body: bytes = b"") -> bytes:
    return (f"{method} sip:{US}@3402000000 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {via_host}:5060;rport;branch={branch}\r\n"
            "From: <sip:34020000001320000001@3402000000>;tag=dev1\r\n"
            f"To: <sip:{US}@3402000000>\r\nCall-ID: call-{branch}\r\nCSeq: 7 {method}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_non_invite_is_retransmitted_until_answered() -> None:
    async def main() -> None:
        ep, dev = _endpoint(), _udp()
        await ep.start()
        try:
            peer = Peer("UDP", *dev.getsockname())
            task = asyncio.create_task(ep.request("MESSAGE", peer, "sip:34020000001320000001@3402000000",
                                                  body=b"<x/>", content_type="Application/MANSCDP+xml"))
            copies = [await _recv(dev) for _ in range(3)]  # drop two, answer the third
            branches = {parse_message(c[0]).vias[0].branch for c in copies}
            assert len(branches) == 1
            req = parse_message(copies[-1][0])
            assert isinstance(req, SipRequest)
            dev.sendto(response_to(req, 200).to_bytes(), copies[-1][1])
            resp = await asyncio.wait_for(task, 5)
            assert resp.status == 200
        finally:
            await ep.close()
            dev.close()
    asyncio.run(main())


def test_unanswered_request_ends_in_408_after_timer_f() -> None:
    async def main() -> None:
        ep, dev = _endpoint(), _udp()
        await ep.start()
        try:
            resp = await ep.request("MESSAGE", Peer("UDP", *dev.getsockname()), "sip:x@y")
            assert resp.status == 408 and "no final response" in resp.reason
            seen = 0
            while True:
                try:
                    await _recv(dev, 0.05)
                    seen += 1
                except asyncio.TimeoutError:
                    break
            assert seen >= 3  # retransmitted, not sent once
        finally:
            await ep.close()
            dev.close()
    asyncio.run(main())


def test_server_transaction_absorbs_retransmissions_and_marks_rport() -> None:
    async def main() -> None:
        ep, dev = _endpoint(), _udp()
        calls: list[Incoming] = []

        async def on_message(inc: Incoming) -> SipResponse:
            calls.append(inc)
            return inc.response(200)
        ep.on("MESSAGE", on_message)
        await ep.start()
        try:
            raw = _request("MESSAGE", "z9hG4bKr1", via_host="192.168.1.64")  # a NATed device's private address
            dev.sendto(raw, ("127.0.0.1", ep.port))
            first, _ = await _recv(dev)
            dev.sendto(raw, ("127.0.0.1", ep.port))
            second, _ = await _recv(dev)
            assert first == second and len(calls) == 1
            resp = parse_message(first)
            assert isinstance(resp, SipResponse) and resp.status == 200 and resp.to.tag
            via = resp.vias[0]
            assert via.params["received"] == "127.0.0.1" and via.params["rport"] == str(dev.getsockname()[1])
            assert ep.counters["retransmissions_absorbed"] == 1
            # No handler: 405 with Allow.
            dev.sendto(_request("SUBSCRIBE", "z9hG4bKr2"), ("127.0.0.1", ep.port))
            resp = parse_message((await _recv(dev))[0])
            assert isinstance(resp, SipResponse) and resp.status == 405 and "MESSAGE" in (resp.get("Allow") or "")
        finally:
            await ep.close()
            dev.close()
    asyncio.run(main())


def test_bad_datagrams_are_reported_and_do_not_stop_the_endpoint() -> None:
    async def main() -> None:
        ep, dev = _endpoint(), _udp()
        rejected: list[tuple[Peer, str]] = []
        ep.on_reject = lambda peer, reason: rejected.append((peer, reason))

        async def boom(inc: Incoming) -> SipResponse:
            raise RuntimeError("handler bug")
        ep.on("MESSAGE", boom)
        await ep.start()
        try:
            good = _request("MESSAGE", "z9hG4bKb1", body=b"<x/>")
            dev.sendto(good[:-10], ("127.0.0.1", ep.port))           # truncated
            dev.sendto(good.replace(b"Content-Length: 4", b"Content-Length: 900000"), ("127.0.0.1", ep.port))
            dev.sendto(b"\x00\x01garbage\r\n\r\n", ("127.0.0.1", ep.port))
            dev.sendto(good, ("127.0.0.1", ep.port))
            resp = parse_message((await _recv(dev))[0])
            assert isinstance(resp, SipResponse) and resp.status == 500  # the handler's bug, answered
            reasons = " | ".join(r for _, r in rejected)
            assert "truncated" in reasons and "not a SIP start line" in reasons and "over the" in reasons
            assert all(p.host == "127.0.0.1" for p, _ in rejected)
            # Oversized over TCP (a datagram cannot be larger than our limit): refused, connection closed.
            reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
            writer.write(good.replace(b"/UDP", b"/TCP")[:-60] + b"X-Pad: " + b"p" * 70_000 + b"\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert "no complete message" in rejected[-1][1] and rejected[-1][0].transport == "TCP"
            writer.close()
            dev.sendto(good.replace(b"z9hG4bKb1", b"z9hG4bKb2"), ("127.0.0.1", ep.port))
            resp = parse_message((await _recv(dev))[0])
            assert isinstance(resp, SipResponse) and resp.status == 500  # still serving UDP
        finally:
            await ep.close()
            dev.close()
    asyncio.run(main())


def test_client_digest_answers_a_challenge_once() -> None:
    async def main() -> None:
        ep, srv = _endpoint(), _udp()
        await ep.start()
        try:
            peer = Peer("UDP", *srv.getsockname())
            from ingest.gb28181.sip import Credentials
            task = asyncio.create_task(ep.request("REGISTER", peer, "sip:34020000002000000009@3402000000",
                                                  headers=[("Expires", "3600")],
                                                  credentials=Credentials(US, "secret")))
            data, addr = await _recv(srv)
            req = parse_message(data)
            assert isinstance(req, SipRequest) and req.get("Authorization") is None
            challenge = response_to(req, 401, headers=[("WWW-Authenticate",
                                                        'Digest realm="3402000000", nonce="abc123", qop="auth"')])
            srv.sendto(challenge.to_bytes(), addr)
            data, addr = await _recv(srv)
            req2 = parse_message(data)
            assert isinstance(req2, SipRequest) and req2.cseq[0] == req.cseq[0] + 1
            f = parse_digest(req2.get("Authorization") or "")
            # Computed here from RFC 2617, independently of ingest.gb28181.sip.digest.
            h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
            ha1, ha2 = h(f"{US}:3402000000:secret"), h(f"REGISTER:{f['uri']}")
            assert f["response"] == h(f"{ha1}:abc123:{f['nc']}:{f['cnonce']}:auth:{ha2}")
            again = response_to(req2, 401, headers=[("WWW-Authenticate",
                                                     'Digest realm="3402000000", nonce="abc124", qop="auth"')])
            srv.sendto(again.to_bytes(), addr)  # refused again: a wrong password
            resp = await asyncio.wait_for(task, 5)
            assert resp.status == 401  # no loop: the same challenge is not answered twice
        finally:
            await ep.close()
            srv.close()
    asyncio.run(main())


def test_tcp_coalesced_requests_and_a_reply_over_the_same_connection() -> None:
    async def main() -> None:
        ep = _endpoint()
        seen: list[Peer] = []

        async def on_message(inc: Incoming) -> SipResponse:
            seen.append(inc.peer)
            return inc.response(200)
        ep.on("MESSAGE", on_message)
        await ep.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", ep.port)
            one = _request("MESSAGE", "z9hG4bKt1", body=b"<a/>").replace(b"/UDP", b"/TCP")
            two = _request("MESSAGE", "z9hG4bKt2", body=b"<b/>").replace(b"/UDP", b"/TCP")
            writer.write(b"\r\n\r\n" + one + two[:50])
            await writer.drain()
            writer.write(two[50:])
            await writer.drain()
            got = b""
            while got.count(b"SIP/2.0 200") < 2:
                got += await asyncio.wait_for(reader.read(4096), 5)
            assert len(seen) == 2 and seen[0].transport == "TCP"
            # A request from us to that peer reuses its connection.
            task = asyncio.create_task(ep.request("MESSAGE", seen[0], "sip:dev@3402000000", body=b"<q/>",
                                                  content_type="Application/MANSCDP+xml"))
            data = await asyncio.wait_for(reader.read(4096), 5)
            req = parse_message(data, datagram=False)
            assert isinstance(req, SipRequest) and req.body == b"<q/>"
            writer.write(response_to(req, 200).to_bytes())
            await writer.drain()
            assert (await asyncio.wait_for(task, 5)).status == 200
            writer.close()
        finally:
            await ep.close()
    asyncio.run(main())


@needs_sipp
def test_invite_dialog_with_sipp_uas() -> None:
    """SIPp's built-in UAS answers our INVITE; we ACK and BYE; SIPp counts one successful call."""
    async def main() -> None:
        ep = _endpoint()
        await ep.start()
        from tests.support.sipp import free_udp_tcp_port
        port = free_udp_tcp_port()
        sipp = run_sipp(["-sn", "uas", "-m", "1", "-timeout", "20", "-timeout_error"], port=port)
        try:
            await asyncio.sleep(0.5)  # sipp binds its socket
            peer = Peer("UDP", "127.0.0.1", port)
            result = None
            for _ in range(20):
                result = await ep.invite(peer, f"sip:service@127.0.0.1:{port}", sdp=b"v=0\r\n", timeout=1.0)
                if result.response.status != 408:
                    break
            assert result is not None and result.dialog is not None, result and result.response
            assert result.response.status == 200 and result.dialog.remote_tag
            bye = await result.dialog.bye()
            assert bye is not None and bye.status == 200
            assert result.dialog.ended.is_set()
        finally:
            await ep.close()
        rc = await asyncio.get_running_loop().run_in_executor(None, sipp.wait, 30)
        assert rc == 0, sipp.log
    asyncio.run(main())


@needs_sipp
def test_incoming_invite_from_sipp_uac_becomes_a_dialog_ended_by_its_bye() -> None:
    async def main() -> None:
        ep = _endpoint()
        dialogs = []

        async def on_invite(inc: Incoming) -> SipResponse:
            resp, dialog = inc.accept(b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=Play\r\n")
            dialogs.append(dialog)
            return resp
        ep.on("INVITE", on_invite)
        await ep.start()
        sipp = run_sipp(["-sn", "uac", "-m", "1", "-d", "200", "-timeout", "20", "-timeout_error",
                         f"127.0.0.1:{ep.port}"])
        try:
            rc = await asyncio.get_running_loop().run_in_executor(None, sipp.wait, 30)
            assert rc == 0, sipp.log
            assert len(dialogs) == 1
            await asyncio.wait_for(dialogs[0].ended.wait(), 5)
            assert dialogs[0].end_reason == "remote BYE"
        finally:
            sipp.stop()
            await ep.close()
    asyncio.run(main())


def test_port_zero_picks_again_when_the_tcp_twin_is_taken() -> None:
    """Port 0: the free UDP port's TCP twin may be held by another socket; start picks again."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]

    async def main() -> int:
        ep = _endpoint()
        assert ep._udp is not None
        real_start = ep._udp.start
        calls: list[int] = []

        async def first_on_the_taken_port(host: str, port: int) -> tuple[str, int]:
            calls.append(port)
            return await real_start(host, taken if len(calls) == 1 else port)

        ep._udp.start = first_on_the_taken_port  # type: ignore[method-assign]
        await ep.start()
        try:
            # Picked again (more than once only if another process on this machine happened to
            # hold the next free port's TCP twin too: the suite runs in parallel).
            assert len(calls) >= 2 and set(calls) == {0}, calls
            return ep.port
        finally:
            await ep.close()

    try:
        port = asyncio.run(main())
    finally:
        holder.close()
    assert port != taken
