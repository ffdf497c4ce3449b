"""SIPp scenarios for a GB/T 28181 device (ids written in: SIPp's out-of-call scenarios cannot
use injection files). The Catalog answer is one MESSAGE per item, in GB2312.

Every request of a scenario keeps the call's own Call-ID: SIPp matches responses to calls by
Call-ID, so a keepalive with another one never sees its 200 and is retransmitted forever."""

from __future__ import annotations

from tests.support.sipp import answer

SERVER_ID = "34020000002000000001"
DOMAIN = "3402000000"

HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n'


def _register(dev: str, cseq: int, expires: int, *, auth: bool) -> str:
    # No empty line when there is no Authorization: SIPp would send it, ending the headers early.
    auth_line = "\n      [authentication]" if auth else ""
    return f"""
  <send retrans="500">
    <![CDATA[
      REGISTER sip:{SERVER_ID}@{DOMAIN} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{dev}@{DOMAIN}>;tag=[call_number]
      To: <sip:{dev}@{DOMAIN}>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:{dev}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Expires: {expires}{auth_line}
      Content-Length: 0

    ]]>
  </send>
"""


def register_scenario(dev: str, *, expect: int = 200, keepalives: int = 0, interval_ms: int = 1000,
                      silence_ms: int = 0, unregister: bool = False) -> str:
    """REGISTER with digest (``-au``/``-ap``), then keepalives, then silence, then optionally Expires: 0."""
    parts = [HEAD, '<scenario name="gb28181 device">', _register(dev, 1, 3600, auth=False),
             '  <recv response="401" auth="true"/>', _register(dev, 2, 3600, auth=True),
             f'  <recv response="{expect}"/>']
    for i in range(keepalives):
        parts.append(f"""
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:{SERVER_ID}@{DOMAIN} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{dev}@{DOMAIN}>;tag=ka[call_number]
      To: <sip:{SERVER_ID}@{DOMAIN}>
      Call-ID: [call_id]
      CSeq: {10 + i} MESSAGE
      Content-Type: Application/MANSCDP+xml
      Max-Forwards: 70
      Content-Length: [len]

      <?xml version="1.0" encoding="GB2312"?>
      <Notify>
      <CmdType>Keepalive</CmdType>
      <SN>{100 + i}</SN>
      <DeviceID>{dev}</DeviceID>
      <Status>OK</Status>
      </Notify>
    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="{interval_ms}"/>
""")
    if silence_ms:
        parts.append(f'  <pause milliseconds="{silence_ms}"/>')
    if unregister:
        parts += [_register(dev, 30, 0, auth=False), '  <recv response="401" auth="true"/>',
                  _register(dev, 31, 0, auth=True), '  <recv response="200"/>']
    parts.append("</scenario>\n")
    return "".join(parts)


def device_message(dev: str, tag: str, cseq: int, body: bytes) -> bytes:
    """The device's MESSAGE to us with ``body`` (already encoded), and our 200 awaited."""
    return f"""
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:{SERVER_ID}@{DOMAIN} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{dev}@{DOMAIN}>;tag={tag}[call_number]
      To: <sip:{SERVER_ID}@{DOMAIN}>
      Call-ID: [call_id]
      CSeq: {cseq} MESSAGE
      Content-Type: Application/MANSCDP+xml
      Max-Forwards: 70
      Content-Length: [len]

      """.encode() + body + b"""
    ]]>
  </send>
  <recv response="200"/>
"""


def answering_scenario(name: str, cmd_type: str, replies: list[bytes]) -> bytes:
    """Out-of-call: answer every MESSAGE with 200; a query of ``cmd_type`` is also answered with
    ``replies`` (``device_message`` blocks; ``[$sn]`` in them is the query's SN)."""
    head = f"""<scenario name="{name}">
  <recv request="MESSAGE" crlf="true">
    <action>
      <ereg regexp="SN>([0-9]+)" search_in="body" assign_to="m,sn"/>
      <ereg regexp="CmdType>({cmd_type})" search_in="body" assign_to="m,isquery"/>
    </action>
  </recv>
{answer(to_tag=";tag=[call_number]")}  <nop test="isquery" next="query"/>
  <nop next="done"/>
  <label id="query"/>
"""
    return HEAD.encode() + head.encode() + b"".join(replies) + b'  <label id="done"/>\n</scenario>\n'


def catalog_scenario(dev: str, channels: list[tuple[str, str, str]], *, sum_num: int | None = None,
                     encoding: str = "GB2312", declare: bool = True) -> bytes:
    """Out-of-call scenario: answer every MESSAGE with 200; a Catalog query also gets one
    MESSAGE per channel (id, name, CivilCode), SumNum = ``sum_num`` or the channel count,
    the body in ``encoding`` (declared in the XML, unless ``declare`` is False)."""
    total = len(channels) if sum_num is None else sum_num
    decl = f'<?xml version="1.0" encoding="{encoding}"?>' if declare else ""
    replies = []
    for i, (cid, name, civil) in enumerate(channels):
        body = (f"{decl}\n<Response>\n<CmdType>Catalog</CmdType>\n<SN>[$sn]</SN>\n<DeviceID>{dev}</DeviceID>\n"
                f"<SumNum>{total}</SumNum>\n<DeviceList Num=\"1\">\n<Item>\n<DeviceID>{cid}</DeviceID>\n"
                f"<Name>{name}</Name>\n<Manufacturer>Hikvision</Manufacturer>\n<Model>IP Camera</Model>\n"
                f"<CivilCode>{civil}</CivilCode>\n<Parental>0</Parental>\n<ParentID>{dev}</ParentID>\n"
                f"<Status>ON</Status>\n</Item>\n</DeviceList>\n</Response>")
        replies.append(device_message(dev, f"cat{i}", 20 + i, body.encode(encoding)))
    return answering_scenario("gb28181 device queries", "Catalog", replies)
