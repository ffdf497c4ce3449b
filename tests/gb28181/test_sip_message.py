"""SIP message parsing and serialising: lenient with sloppy devices, bounded against bad input."""

from __future__ import annotations

import pytest

from ingest.gb28181.sip.message import (
    MAX_MESSAGE, NameAddr, SipParseError, SipRequest, SipResponse, SipUri, StreamFramer, Via, parse_message,
    response_to,
)

REGISTER = (
    "REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1234\r\n"
    "From: <sip:34020000001320000001@3402000000>;tag=abc\r\n"
    "To: <sip:34020000001320000001@3402000000>\r\n"
    "Call-ID: 1@192.168.1.64\r\n"
    "CSeq: 1 REGISTER\r\n"
    "Contact: <sip:34020000001320000001@192.168.1.64:5060>\r\n"
    "Max-Forwards: 70\r\n"
    "Expires: 3600\r\n"
    "Content-Length: 0\r\n\r\n"
).encode()


def test_request_round_trip() -> None:
    msg = parse_message(REGISTER)
    assert isinstance(msg, SipRequest)
    assert (msg.method, msg.uri) == ("REGISTER", "sip:34020000002000000001@3402000000")
    assert msg.cseq == (1, "REGISTER")
    assert msg.from_.tag == "abc" and msg.from_.user == "34020000001320000001"
    via = msg.vias[0]
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "192.168.1.64", 5060, "z9hG4bK1234")
    assert "rport" in via.params
    again = parse_message(msg.to_bytes())
    assert again.headers == msg.headers and again.body == msg.body


def test_lenient_bare_lf_compact_names_and_folding() -> None:
    raw = (b"message sip:x@y SIP/2.0\n"
           b"v: SIP/2.0/udp 10.0.0.2:5060;branch=z9hG4bKa\n"
           b"f: <sip:a@b>;tag=1\nt: <sip:x@y>\ni: cid\n"
           b"CSeq: 20 MESSAGE\nc: Application/MANSCDP+xml;\n charset=GB2312\n"
           b"garbage line without colon\n"
           b"l: 4\n\nabcdEXTRA")
    msg = parse_message(raw)
    assert isinstance(msg, SipRequest) and msg.method == "MESSAGE"
    assert msg.call_id == "cid" and msg.vias[0].transport == "UDP"
    assert msg.content_type == "application/manscdp+xml" and msg.charset == "GB2312"
    assert msg.body == b"abcd"  # Content-Length wins over trailing bytes


def test_response_without_reason_phrase() -> None:
    raw = (b"SIP/2.0 200\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKb\r\nFrom: <sip:a@b>;tag=1\r\n"
           b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 2 MESSAGE\r\n\r\n")
    msg = parse_message(raw)
    assert isinstance(msg, SipResponse) and msg.status == 200 and msg.reason == ""
    assert msg.to.tag == "2"


@pytest.mark.parametrize("raw, reason", [
    (REGISTER[:-30], "truncated"),
    (REGISTER.replace(b"Content-Length: 0", b"Content-Length: 50"), "truncated: Content-Length 50"),
    (b"SIP/2.0 200 OK\r\nVia: x\r\n", "no blank line"),
    (b"HELLO\r\n\r\n", "not a SIP start line"),
    (REGISTER.replace(b"Call-ID: 1@192.168.1.64\r\n", b""), "missing Call-ID"),
    (REGISTER.replace(b"Content-Length: 0", b"Content-Length: zz"), "not a number"),
    (REGISTER.replace(b"Content-Length: 0", b"Content-Length: 99999999"), "over the"),
    (REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: one REGISTER"), "unreadable CSeq"),
    (b"SIP/2.0 999 Odd\r\nVia: a\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 A\r\n\r\n", "out of range"),
])
def test_bad_messages_give_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(SipParseError, match=reason):
        parse_message(raw)


def test_oversized_message_and_too_many_headers() -> None:
    with pytest.raises(SipParseError, match="limit"):
        parse_message(REGISTER + b"x" * MAX_MESSAGE)
    many = REGISTER.replace(b"Max-Forwards: 70\r\n", b"X-A: 1\r\n" * 200)
    with pytest.raises(SipParseError, match="header lines"):
        parse_message(many)


def test_stream_framer_splits_coalesced_and_partial_messages() -> None:
    body_msg = REGISTER.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 3\r\n\r\nabc")
    framer = StreamFramer()
    stream = b"\r\n\r\n" + REGISTER + body_msg
    out = framer.feed(stream[:100]) + framer.feed(stream[100:-2])
    assert out == [REGISTER]
    assert framer.feed(stream[-2:]) == [body_msg]
    with pytest.raises(SipParseError):
        StreamFramer().feed(b"INVITE sip:a SIP/2.0\r\n" + b"X: y\r\n" * (MAX_MESSAGE // 6))


def test_name_addr_via_uri() -> None:
    na = NameAddr.parse('"一号 camera" <sip:3402@10.0.0.1:5062;transport=tcp>;tag=9')
    assert na.display == "一号 camera" and na.tag == "9" and na.user == "3402"
    uri = SipUri.parse(na.uri)
    assert (uri.host, uri.port, uri.params) == ("10.0.0.1", 5062, {"transport": "tcp"})
    assert SipUri.parse("sip:[::1]:5060").host == "::1"
    via = Via.parse("SIP/2.0/TCP 10.1.1.1;branch=z9hG4bKx;received=1.2.3.4")
    assert via.port is None and via.params["received"] == "1.2.3.4"
    assert Via.parse(str(via)) == via


def test_response_to_copies_identity_and_adds_tag() -> None:
    req = parse_message(REGISTER)
    assert isinstance(req, SipRequest)
    resp = response_to(req, 401, to_tag="t1")
    assert resp.status == 401 and resp.reason == "Unauthorized"
    assert resp.to.tag == "t1" and resp.call_id == req.call_id and resp.cseq == req.cseq
    assert resp.get_all("Via") == req.get_all("Via")
    assert b"Content-Length: 0\r\n\r\n" in resp.to_bytes()
