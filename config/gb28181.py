"""GB/T 28181 device codes and camera id rules.

A GB/T 28181 code is 20 digits: 8 digits of administrative division (province,
city, county, grass-roots unit), 2 of industry, 3 of type, 1 of network, 6 of
serial. Type 131 is a camera (摄像机) and 132 a network camera (网络摄像机).
"""

from __future__ import annotations

import re

CAMERA_TYPE_CODES = frozenset({"131", "132"})
_SLUG = re.compile(r"[a-z0-9-]{1,64}")


class InvalidCameraId(ValueError):
    """A camera id that is neither a GB/T 28181 camera code nor a slug."""


def is_gb_code(value: str) -> bool:
    """True when ``value`` looks like a GB/T 28181 code (20 digits)."""
    return len(value) == 20 and value.isdigit()


def gb_division(code: str) -> str:
    """The 8-digit administrative division a GB/T 28181 code belongs to."""
    return code[:8]


def gb_type(code: str) -> str:
    """The 3-digit device type (positions 11-13, 1-based)."""
    return code[10:13]


def validate_camera_id(value: str) -> str:
    """Return ``value`` if it is a valid camera id, else raise ``InvalidCameraId``.

    Digits-only ids of any length are taken as attempted GB codes, so a 19-digit
    typo is reported as a malformed GB code rather than accepted as a slug.
    """
    if value.isdigit():
        if len(value) != 20:
            raise InvalidCameraId(
                f"camera id {value!r}: a GB/T 28181 code has 20 digits, this has {len(value)}"
            )
        if gb_type(value) not in CAMERA_TYPE_CODES:
            raise InvalidCameraId(
                f"camera id {value!r}: GB/T 28181 type code (digits 11-13) is "
                f"{gb_type(value)!r}; a camera is 131 or 132"
            )
        return value
    if not _SLUG.fullmatch(value):
        raise InvalidCameraId(
            f"camera id {value!r}: use a 20-digit GB/T 28181 code or a slug of "
            "lower-case letters, digits and '-' (1-64 characters)"
        )
    return value
