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
# Who pulls an RTSP camera: our asyncio RTSP client, or PyAV's (FFmpeg's) demuxer. None: the
# ``ingest_puller`` setting decides (default native). See docs/native-ingest.md.
Puller = Literal["native", "ffmpeg"]
StreamName = Literal["main", "sub"]
# Where the video comes from: pulled over RTSP, or pushed by a GB/T 28181 device when invited.
CameraSource = Literal["rtsp", "gb28181"]
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
    """One registered camera: a main RTSP stream and optionally a sub-stream, or (``source``
    "gb28181") a channel of a GB/T 28181 device, which has no URL: its video arrives when the
    device is invited (``gb_device_id`` says which device; its main stream only)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = Field(min_length=1, max_length=128)
    region: str
    main_url: str = ""
    sub_url: str | None = None
    enabled: bool = True
    retention_days: int = Field(30, ge=1, le=3650)
    # Set by an admin to allow retention_days below RETENTION_FLOOR_DAYS.
    retention_override: bool = False
    transcode: TranscodeProfile = "none"
    rtsp_transport: RtspTransport = "tcp"
    puller: Puller | None = None
    source: CameraSource = "rtsp"
    # GB/T 28181 channels: the device that has the channel, and the CivilCode it gave.
    # ``region`` is that code's region, or its nearest registered parent when the code is
    # not registered (``region_note`` then says so).
    gb_device_id: str | None = None
    gb_civil_code: str | None = None

    @model_validator(mode="after")
    def _source_fields(self) -> "Camera":
        if self.source == "rtsp":
            if not self.main_url:
                raise ValueError(f"camera {self.id}: an RTSP camera needs main_url (rtsp://HOST[:PORT]/PATH)")
            if self.gb_device_id is not None:
                raise ValueError(f"camera {self.id}: gb_device_id is only for source gb28181")
        else:
            if self.main_url or self.sub_url:
                raise ValueError(f"camera {self.id}: a GB/T 28181 channel has no URL; its device sends the video")
            if self.gb_device_id is None or len(self.gb_device_id) != 20 or not self.gb_device_id.isdigit():
                raise ValueError(f"camera {self.id}: a GB/T 28181 channel needs gb_device_id (20 digits)")
        return self

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
        return validate_rtsp_url(value) if value else value

    @field_validator("sub_url")
    @classmethod
    def _sub_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        return validate_rtsp_url(value)

    def stream_url(self, stream: StreamName) -> str | None:
        """The RTSP URL of ``stream``; None when there is none (always for a GB/T 28181 channel)."""
        if self.source != "rtsp":
            return None
        return self.main_url if stream == "main" else self.sub_url

    def has_stream(self, stream: StreamName) -> bool:
        """True when the camera has ``stream`` (a GB/T 28181 channel: main only)."""
        if self.source == "gb28181":
            return stream == "main"
        return self.stream_url(stream) is not None

    @property
    def region_note(self) -> str | None:
        """Why a GB/T 28181 channel is not in the region its CivilCode names, if it is not."""
        if self.gb_civil_code and self.gb_civil_code != self.region:
            return f"CivilCode {self.gb_civil_code} is not a registered region; placed under {self.region}"
        return None
