"""SIPp scenarios for a GB/T 28181 device (ids written in: SIPp's out-of-call scenarios cannot
use injection files). The Catalog answer is one MESSAGE per item, in GB2312.

Every request of a scenario keeps the call's own Call-ID: SIPp matches responses to calls by
Call-ID, so a keepalive with another one never sees its 200 and is retransmitted forever."""

from __future__ import annotations

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


def catalog_scenario(dev: str, channels: list[tuple[str, str, str]], *, sum_num: int | None = None,
                     encoding: str = "GB2312", declare: bool = True) -> bytes:
    """Out-of-call scenario: answer every MESSAGE with 200; a Catalog query also gets one
    MESSAGE per channel (id, name, CivilCode), SumNum = ``sum_num`` or the channel count,
    the body in ``encoding`` (declared in the XML, unless ``declare`` is False)."""
    total = len(channels) if sum_num is None else sum_num
    decl = f'<?xml version="1.0" encoding="{encoding}"?>' if declare else ""
    out = [HEAD.encode(), b"""<scenario name="gb28181 device queries">
  <recv request="MESSAGE" crlf="true">
    <action>
      <ereg regexp="SN>([0-9]+)" search_in="body" assign_to="m,sn"/>
      <ereg regexp="CmdType>(Catalog)" search_in="body" assign_to="m,iscat"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <nop test="iscat" next="catalog"/>
  <nop next="done"/>
  <label id="catalog"/>
"""]
    for i, (cid, name, civil) in enumerate(channels):
        body = (f"{decl}\n<Response>\n<CmdType>Catalog</CmdType>\n<SN>[$sn]</SN>\n<DeviceID>{dev}</DeviceID>\n"
                f"<SumNum>{total}</SumNum>\n<DeviceList Num=\"1\">\n<Item>\n<DeviceID>{cid}</DeviceID>\n"
                f"<Name>{name}</Name>\n<Manufacturer>Hikvision</Manufacturer>\n<Model>IP Camera</Model>\n"
                f"<CivilCode>{civil}</CivilCode>\n<Parental>0</Parental>\n<ParentID>{dev}</ParentID>\n"
                f"<Status>ON</Status>\n</Item>\n</DeviceList>\n</Response>")
        out.append(f"""
  <send retrans="500">
    <![CDATA[
      MESSAGE sip:{SERVER_ID}@{DOMAIN} SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
      From: <sip:{dev}@{DOMAIN}>;tag=cat{i}[call_number]
      To: <sip:{SERVER_ID}@{DOMAIN}>
      Call-ID: [call_id]
      CSeq: {20 + i} MESSAGE
      Content-Type: Application/MANSCDP+xml
      Max-Forwards: 70
      Content-Length: [len]

      """.encode() + body.encode(encoding) + b"""
    ]]>
  </send>
  <recv response="200"/>
""")
    out.append(b'  <label id="done"/>\n</scenario>\n')
    return b"".join(out)
