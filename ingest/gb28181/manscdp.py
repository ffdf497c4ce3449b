"""MANSCDP bodies (GB/T 28181 XML in SIP MESSAGE): reading in any encoding devices use, and writing.

Devices send GB2312 (often with GBK or GB18030 characters in it), GB18030 or UTF-8, and
some declare one encoding and use another, or declare none. ``read_body`` picks the
encoding from the XML declaration, then the Content-Type charset, then by trying UTF-8
and GB18030; GB2312 and GBK are read as GB18030 (a superset of both), so a name with a
rare character still reads. What it had to guess is in ``Manscdp.note``. lxml parses
the text with entities and network access off (no XXE), and recovers from small errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

MAX_BODY = 64 * 1024
_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9_.:-]+)[\"'][^>]*\?>", re.IGNORECASE)
_DECL_ANY = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
# Codecs that read a superset of what was declared.
_WIDER = {"gb2312": "gb18030", "gbk": "gb18030", "gb_2312-80": "gb18030", "euc-cn": "gb18030",
          "cp936": "gb18030", "x-gbk": "gb18030", "utf8": "utf-8"}


class ManscdpError(ValueError):
    """A body that is not a MANSCDP document; the message says why."""


@dataclass
class Manscdp:
    """A parsed MANSCDP document: ``kind`` is the root (Query, Response, Notify, Control)."""

    kind: str
    cmd_type: str
    sn: int | None
    device_id: str
    root: etree._Element
    encoding: str
    note: str = ""

    def text(self, path: str, default: str = "") -> str:
        """Text of the first element at ``path`` (e.g. ``"SumNum"``, ``"Info/Name"``), stripped."""
        el = self.root.find(path)
        if el is None or el.text is None:
            return default
        return el.text.strip()

    def int(self, path: str) -> int | None:
        value = self.text(path)
        return int(value) if value.isdigit() else None


def _codec(name: str) -> str:
    low = name.strip().lower()
    return _WIDER.get(low, low)


def decode(body: bytes, charset: str | None = None) -> tuple[str, str, str]:
    """(text, encoding used, note). Raises ``ManscdpError`` if nothing reads it."""
    if len(body) > MAX_BODY:
        raise ManscdpError(f"MANSCDP body of {len(body)} bytes is over the {MAX_BODY}-byte limit")
    m = _DECL.match(body)
    declared = m.group(1).decode("ascii") if m else None
    tried: list[str] = []
    order = [x for x in (declared, charset) if x] + ["utf-8", "gb18030"]
    for name in order:
        codec = _codec(name)
        if codec in tried:
            continue
        tried.append(codec)
        try:
            text = body.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        note = ""
        if declared is None and charset is None and codec != "utf-8":
            note = f"body declares no encoding; read as {codec.upper()}"
        elif declared is not None and codec != _codec(declared):
            note = f"body declares {declared} but is not; read as {codec.upper()}"
        elif declared is None and charset is not None and codec != _codec(charset):
            note = f"Content-Type says charset={charset} but the body is not; read as {codec.upper()}"
        return text, codec, note
    raise ManscdpError(f"body is in no encoding we read (tried {', '.join(tried)})")


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False,
                          remove_blank_text=True)


def read_body(body: bytes, charset: str | None = None) -> Manscdp:
    """Parse a MANSCDP body (see the module docstring for how its encoding is found)."""
    text, codec, note = decode(body, charset)
    text = _DECL_ANY.sub("", text, count=1).lstrip("\ufeff")
    try:
        root = etree.fromstring(text.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ManscdpError(f"body is not XML: {exc}") from None
    if root is None:
        raise ManscdpError("body is not XML (nothing could be read)")
    cmd = root.findtext("CmdType")
    if not cmd:
        raise ManscdpError(f"<{root.tag}> has no CmdType: not a MANSCDP document")
    sn_text = (root.findtext("SN") or "").strip()
    return Manscdp(kind=str(root.tag), cmd_type=cmd.strip(), sn=int(sn_text) if sn_text.isdigit() else None,
                   device_id=(root.findtext("DeviceID") or "").strip(), root=root, encoding=codec, note=note)


def build(kind: str, cmd_type: str, sn: int, device_id: str, fields: dict[str, str] | None = None, *,
          encoding: str = "GB2312") -> bytes:
    """A MANSCDP document, e.g. ``build("Query", "Catalog", 17, "3402...")``, in ``encoding``."""
    root = etree.Element(kind)
    for tag, value in (("CmdType", cmd_type), ("SN", str(sn)), ("DeviceID", device_id), *(fields or {}).items()):
        etree.SubElement(root, tag).text = value
    body = etree.tostring(root, pretty_print=True, encoding="unicode")
    return f'<?xml version="1.0" encoding="{encoding}"?>\r\n{body}'.encode(_codec(encoding))


MANSCDP_TYPE = "Application/MANSCDP+xml"
