"""Keep camera credentials out of logs, errors, metrics and API answers."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# user:pass@ or user@ right after a scheme, anywhere in a string (an error
# message from FFmpeg may embed the URL it was given).
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*@")


def redact_url(url: str) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://***@host/x``; other URLs unchanged."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


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
