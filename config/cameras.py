"""Camera and region models: what an operator registers.

These are the validated shapes. They are stored by ``storage.index.registry`` and
read back into these models, so every write path checks the same rules.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.gb28181 import validate_camera_id
from config.redact import split_userinfo

TranscodeProfile = Literal["none", "live-h264", "sub", "archive-h264"]
RtspTransport = Literal["tcp", "udp"]
StreamName = Literal["main", "sub"]
STREAMS: tuple[StreamName, ...] = ("main", "sub")

# Public-security video is kept at least 30 days; only an admin's explicit override goes lower.
RETENTION_FLOOR_DAYS = 30

_REGION_CODE = re.compile(r"[0-9A-Za-z_-]{1,32}")


_RESERVED_IN_USERINFO = {"/": "%2F", "?": "%3F", "#": "%23"}


def validate_rtsp_url(url: str) -> str:
    """Accept ``rtsp://`` and ``rtsps://`` URLs with a host; reject anything else.

    The user and password are everything between the scheme and the last "@" (so a password
    may hold "@"). A "/", "?" or "#" in them must be percent-encoded: unencoded, URL parsers
    end the host there and the password ends up in the clear."""
    _, userinfo, _ = split_userinfo(url)
    if userinfo is not None:
        for char, code in _RESERVED_IN_USERINFO.items():
            if char in userinfo:
                raise ValueError(f"the user name or password in the URL contains {char!r}: percent-encode it "
                                 f"as {code} (for example rtsp://admin:pa{code}ss@HOST/PATH)")
    parts = urlsplit(url)
    if parts.scheme not in ("rtsp", "rtsps"):
        raise ValueError(
            f"URL scheme {parts.scheme or '(none)'!r} is not supported: use rtsp:// or rtsps://"
        )
    if not parts.hostname:
        raise ValueError("the URL has no host: use rtsp://HOST[:PORT]/PATH")
    return url


class Region(BaseModel):
    """A node of the county -> township -> village tree."""

    model_config = ConfigDict(extra="forbid")

    code: str
    name: str = Field(min_length=1, max_length=128)
    parent: str | None = None

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _REGION_CODE.fullmatch(value):
            raise ValueError(f"region code {value!r}: use 1-32 letters, digits, '_' or '-'")
        return value


class Camera(BaseModel):
    """One registered camera: a main RTSP stream and optionally a sub-stream."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = Field(min_length=1, max_length=128)
    region: str
    main_url: str
    sub_url: str | None = None
    enabled: bool = True
    retention_days: int = Field(30, ge=1, le=3650)
    # Set by an admin to allow retention_days below RETENTION_FLOOR_DAYS.
    retention_override: bool = False
    transcode: TranscodeProfile = "none"
    rtsp_transport: RtspTransport = "tcp"

    @model_validator(mode="after")
    def _retention_floor(self) -> "Camera":
        if self.retention_days < RETENTION_FLOOR_DAYS and not self.retention_override:
            raise ValueError(
                f"camera {self.id}: retention_days {self.retention_days} is below the {RETENTION_FLOOR_DAYS}-day floor "
                "for public-security video; an admin must set retention_override to go lower"
            )
        return self

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return validate_camera_id(value)

    @field_validator("main_url")
    @classmethod
    def _main_url(cls, value: str) -> str:
        return validate_rtsp_url(value)

    @field_validator("sub_url")
    @classmethod
    def _sub_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        return validate_rtsp_url(value)

    def stream_url(self, stream: StreamName) -> str | None:
        return self.main_url if stream == "main" else self.sub_url
