"""Keep camera credentials out of logs, errors, metrics and API answers."""

from __future__ import annotations

import re

# user:pass@ or user@ right after a scheme, anywhere in a string (an error message from
# FFmpeg may embed the URL it was given): up to the *last* "@" of the word, so a password
# holding "@", "/" or "#" is hidden whole (over-redacting a path with "@" is the safe side).
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)\S*@")


def split_userinfo(url: str) -> tuple[str, str | None, str]:
    """``(scheme "://", userinfo or None, the rest)``: the userinfo is everything between the
    scheme and the last "@" (RFC 3986 lets no unencoded "@" into a host, path "@" must be %40)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", None, url
    head, at, tail = rest.rpartition("@")
    if not at:
        return scheme + sep, None, rest
    return scheme + sep, head, tail


def redact_url(url: str) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://***@host/x``; other URLs unchanged."""
    prefix, userinfo, rest = split_userinfo(url)
    if userinfo is None:
        return url
    return f"{prefix}***@{rest}"


def redact_text(text: str) -> str:
    """Redact every ``scheme://user:pass@`` inside free text."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


class RedactingFilter:
    """A ``logging`` filter that strips credentials from every record it passes."""

    def filter(self, record: object) -> bool:
        import logging

        assert isinstance(record, logging.LogRecord)
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
