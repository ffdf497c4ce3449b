"""SIP messages (RFC 3261): lenient parsing with bounded sizes, and serialising.

Parsing is lenient where real devices are sloppy (bare LF line ends, compact header
names, odd case, missing reason phrases, folded header lines) and strict where a bad
message could cost memory or hide an attack: a message is at most ``MAX_MESSAGE``
bytes, has at most ``MAX_HEADERS`` header lines, and its body is exactly
``Content-Length`` bytes (UDP: the rest of the datagram when Content-Length is absent).
Anything else raises ``SipParseError`` with a reason that fits in a status line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_MESSAGE = 64 * 1024
MAX_HEADERS = 128
MAX_LINE = 8 * 1024

# RFC 3261 section 7.3.3 compact forms, and the canonical spelling we print.
_COMPACT = {"v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact", "l": "Content-Length",
            "c": "Content-Type", "k": "Supported", "s": "Subject", "e": "Content-Encoding", "o": "Event"}
_CANONICAL = {name.lower(): name for name in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Length", "Content-Type", "Max-Forwards",
    "Expires", "User-Agent", "Authorization", "WWW-Authenticate", "Proxy-Authenticate", "Proxy-Authorization",
    "Route", "Record-Route", "Subject", "Supported", "Allow", "Date", "Event", "Subscription-State", "Server",
    "Content-Encoding", "Min-Expires", "Retry-After", "Reason", "Warning",
)}
_REQUEST_LINE = re.compile(r"([A-Za-z]+) +(\S+) +SIP/2\.0\s*$", re.IGNORECASE)
_STATUS_LINE = re.compile(r"SIP/2\.0 +(\d{3})(?: +(.*))?$", re.IGNORECASE)

REASONS = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 202: "Accepted",
           400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 407: "Proxy Authentication Required", 408: "Request Timeout",
           413: "Request Entity Too Large", 415: "Unsupported Media Type", 423: "Interval Too Brief",
           480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 486: "Busy Here",
           487: "Request Terminated", 488: "Not Acceptable Here", 500: "Server Internal Error",
           501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out"}


class SipParseError(ValueError):
    """A message that could not be read; ``str()`` is a short reason for logs and status."""


def canonical_name(name: str) -> str:
    low = name.strip().lower()
    if low in _COMPACT:
        return _COMPACT[low]
    return _CANONICAL.get(low, name.strip())


@dataclass
class SipMessage:
    """Headers (ordered, repeatable) and a byte body, shared by requests and responses."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (any case, compact form accepted)."""
        want = canonical_name(name).lower()
        for k, v in self.headers:
            if k.lower() == want:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, comma-separated values split (Via, Route...), in order."""
        want = canonical_name(name).lower()
        out: list[str] = []
        for k, v in self.headers:
            if k.lower() == want:
                out.extend(split_commas(v) if want not in _NO_SPLIT else [v])
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` header with one, keeping the first one's place."""
        name = canonical_name(name)
        want = name.lower()
        for i, (k, _) in enumerate(self.headers):
            if k.lower() == want:
                self.headers[i] = (name, value)
                self.headers[i + 1:] = [(k2, v2) for k2, v2 in self.headers[i + 1:] if k2.lower() != want]
                return
        self.headers.append((name, value))

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        item = (canonical_name(name), value)
        if first:
            self.headers.insert(0, item)
        else:
            self.headers.append(item)

    def remove(self, name: str) -> None:
        want = canonical_name(name).lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != want]

    # -- the headers every message has -------------------------------------------------

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(number, method) of CSeq; (0, '') when it is missing or unreadable."""
        raw = (self.get("CSeq") or "").split()
        if len(raw) != 2 or not raw[0].isdigit():
            return 0, ""
        return int(raw[0]), raw[1].upper()

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.get("From") or "")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.get("To") or "")

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.get_all("Via")]

    @property
    def content_type(self) -> str:
        return (self.get("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str | None:
        """The ``charset`` parameter of Content-Type, if the sender gave one."""
        for part in (self.get("Content-Type") or "").split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "charset":
                return value.strip().strip('"') or None
        return None

    def _head(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The wire form; Content-Length always matches the body."""
        lines = [self._head()]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class SipRequest(SipMessage):
    method: str = ""
    uri: str = ""

    def _head(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri} call-id={self.call_id}>"


@dataclass
class SipResponse(SipMessage):
    status: int = 200
    reason: str = "OK"

    def _head(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason} call-id={self.call_id}>"


_NO_SPLIT = {"www-authenticate", "authorization", "proxy-authenticate", "proxy-authorization", "date",
             "subject", "user-agent", "server", "content-type", "call-id", "cseq", "from", "to",
             "warning", "reason"}


def split_commas(value: str) -> list[str]:
    """Split a header value at commas that are outside quotes and angle brackets."""
    out, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(value):
        if ch == '"' and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and not quoted and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
    out.append(value[start:].strip())
    return [v for v in out if v]


def parse_params(text: str) -> dict[str, str]:
    """``;a=1;b;c="x"`` -> {'a': '1', 'b': '', 'c': 'x'} (names lower-cased)."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            out[key.strip().lower()] = value.strip().strip('"')
    return out


def _params_text(params: dict[str, str]) -> str:
    return "".join(f";{k}={v}" if v != "" else f";{k}" for k, v in params.items())


@dataclass
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport;received=...``."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @classmethod
    def parse(cls, value: str) -> "Via":
        proto, _, rest = value.strip().partition(" ")
        sent_by, _, params = rest.strip().partition(";")
        host, port = split_host_port(sent_by.strip())
        return cls(proto.rpartition("/")[2].upper() or "UDP", host, port, parse_params(params))

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")

    def __str__(self) -> str:
        where = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {where}{_params_text(self.params)}"


@dataclass
class NameAddr:
    """From/To/Contact: ``"name" <sip:user@host:port;uri-params>;tag=...``."""

    display: str
    uri: str
    params: dict[str, str]

    @classmethod
    def parse(cls, value: str) -> "NameAddr":
        value = value.strip()
        if "<" in value:
            display, _, rest = value.partition("<")
            uri, _, params = rest.partition(">")
            return cls(display.strip().strip('"'), uri.strip(), parse_params(params))
        # No brackets: parameters belong to the header, not the URI (RFC 3261 20.10).
        uri, _, params = value.partition(";")
        return cls("", uri.strip(), parse_params(params))

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")

    @property
    def user(self) -> str:
        return SipUri.parse(self.uri).user

    def __str__(self) -> str:
        shown = f'"{self.display}" ' if self.display else ""
        return f"{shown}<{self.uri}>{_params_text(self.params)}"


@dataclass
class SipUri:
    """``sip:user@host:port;params``; ``user`` may be empty."""

    user: str
    host: str
    port: int | None
    params: dict[str, str]
    scheme: str = "sip"

    @classmethod
    def parse(cls, value: str) -> "SipUri":
        value = value.strip().strip("<>")
        scheme, sep, rest = value.partition(":")
        if not sep:
            scheme, rest = "sip", value
        rest, _, _headers = rest.partition("?")
        hostpart, _, params = rest.partition(";")
        user, at, hostport = hostpart.rpartition("@")
        host, port = split_host_port(hostport)
        return cls(user.partition(":")[0] if at else "", host, port, parse_params(params), scheme.lower())

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        where = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.scheme}:{user}{where}{_params_text(self.params)}"


def split_host_port(text: str) -> tuple[str, int | None]:
    """``host:port`` / ``[v6]:port`` / ``host`` -> (host, port or None)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port.isdigit() else None
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return text, None


# -- parsing ---------------------------------------------------------------------------


def parse_message(data: bytes, *, datagram: bool = True) -> SipMessage:
    """Parse one whole message. ``datagram``: the body may be the rest of the buffer when
    Content-Length is missing (RFC 3261 18.3 allows that only for UDP)."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message of {len(data)} bytes is over the {MAX_MESSAGE}-byte limit")
    end, sep_len = _head_end(data)
    if end < 0:
        raise SipParseError("truncated: no blank line after the headers")
    message, length = _parse_head(data[:end])
    body = data[end + sep_len:]
    if length is None:
        if not datagram and body:
            raise SipParseError("no Content-Length on a stream transport")
    elif len(body) < length:
        raise SipParseError(f"truncated: Content-Length {length} but {len(body)} body bytes")
    else:
        body = body[:length]
    message.body = bytes(body)
    return message


def _head_end(data: bytes) -> tuple[int, int]:
    """Offset of the blank line ending the headers, and its length (CRLFCRLF or LFLF)."""
    crlf, lf = data.find(b"\r\n\r\n"), data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return crlf, 4
    return lf, 2 if lf >= 0 else 0


def _parse_head(head: bytes) -> tuple[SipMessage, int | None]:
    # Header text is UTF-8 by RFC 3261; devices that put GB2312 in a display name still
    # parse, with the undecodable bytes replaced (bodies are never decoded here).
    text = head.decode("utf-8", errors="replace")
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)  # RFC 3261 7.5: ignore CRLFs before the start line
    if not lines:
        raise SipParseError("empty message")
    if len(lines) > MAX_HEADERS + 1:
        raise SipParseError(f"more than {MAX_HEADERS} header lines")
    start = lines[0].strip()
    message: SipMessage
    if (m := _STATUS_LINE.match(start)) is not None:
        status = int(m.group(1))
        if not 100 <= status <= 699:
            raise SipParseError(f"status code {status} is out of range")
        message = SipResponse(status=status, reason=(m.group(2) or "").strip())
    elif (m := _REQUEST_LINE.match(start)) is not None:
        message = SipRequest(method=m.group(1).upper(), uri=m.group(2))
    else:
        raise SipParseError(f"not a SIP start line: {start[:60]!r}")
    length: int | None = None
    for line in lines[1:]:
        if len(line) > MAX_LINE:
            raise SipParseError(f"a header line is over {MAX_LINE} bytes")
        if line[:1] in (" ", "\t") and message.headers:
            k, v = message.headers[-1]  # folded continuation line
            message.headers[-1] = (k, f"{v} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            continue  # lenient: a garbage line is skipped, not fatal
        name = canonical_name(name)
        value = value.strip()
        if name == "Content-Length":
            if not value.isdigit():
                raise SipParseError(f"Content-Length {value!r} is not a number")
            length = int(value)
            if length > MAX_MESSAGE:
                raise SipParseError(f"Content-Length {length} is over the {MAX_MESSAGE}-byte limit")
        message.headers.append((name, value))
    for required in ("Call-ID", "CSeq", "From", "To", "Via"):
        if message.get(required) is None:
            raise SipParseError(f"missing {required} header")
    if message.cseq[0] == 0 and not (message.get("CSeq") or "").startswith("0"):
        raise SipParseError(f"unreadable CSeq {message.get('CSeq')!r}")
    return message, length


class StreamFramer:
    """Cuts a TCP byte stream into messages. Bare CRLF keepalives (RFC 5626) are skipped;
    more than ``MAX_MESSAGE`` bytes without a complete message raises ``SipParseError``
    (the connection is then closed: there is no way to resynchronise)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            while self._buf[:2] == b"\r\n" or self._buf[:1] == b"\n":
                del self._buf[: 2 if self._buf[:2] == b"\r\n" else 1]
            end, sep_len = _head_end(bytes(self._buf[: MAX_MESSAGE + 4]))
            if end < 0:
                if len(self._buf) > MAX_MESSAGE:
                    raise SipParseError(f"no complete message within {MAX_MESSAGE} bytes")
                return out
            m = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", bytes(self._buf[:end]))
            length = int(m.group(1)) if m else 0
            if length > MAX_MESSAGE or end + sep_len + length > MAX_MESSAGE:
                raise SipParseError(f"Content-Length {length} is over the {MAX_MESSAGE}-byte limit")
            total = end + sep_len + length
            if len(self._buf) < total:
                return out
            out.append(bytes(self._buf[:total]))
            del self._buf[:total]


# -- building ---------------------------------------------------------------------------


def response_to(request: SipRequest, status: int, reason: str | None = None, *, to_tag: str | None = None,
                headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipResponse:
    """A response that copies Via, From, To, Call-ID and CSeq from ``request`` (RFC 3261 8.2.6)."""
    resp = SipResponse(status=status, reason=reason or REASONS.get(status, ""))
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for k, v in request.headers:
            if k == name:
                if name == "To" and to_tag and "tag=" not in v.lower() and status != 100:
                    v = f"{v};tag={to_tag}"
                resp.headers.append((k, v))
    resp.headers += headers or []
    resp.body = body
    return resp
