"""``GbDeviceStore``: GB/T 28181 devices and their state, in the index (table ``gb_devices``).

The SIP server's process writes registrations, keepalives, query answers and states here;
API nodes and the CLI read the same rows, so ``GET /api/gb/devices`` works on any node.
Per-device passwords are sealed with the index's ``SecretCipher`` (they must be readable:
digest needs the password itself, not a hash of it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import sessionmaker

from storage.db.schema import GbDeviceRow
from config.times import now_us

if TYPE_CHECKING:
    from storage.index.credentials import SecretCipher

DEVICE_STATES = ("online", "offline", "unregistered", "refused")


@dataclass
class GbDevice:
    """One device as the index knows it (no password: see ``GbDeviceStore.password``)."""

    device_id: str
    added: bool = False
    state: str = "unregistered"
    reason: str = ""
    transport: str = ""
    source_host: str = ""
    source_port: int = 0
    contact: str = ""
    expires_us: int = 0
    registered_us: int = 0
    last_keepalive_us: int = 0
    keepalive_interval_s: float = 0.0
    name: str = ""
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    channels: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    catalog: dict[str, Any] = field(default_factory=dict)
    last_invite: dict[str, Any] = field(default_factory=dict)
    worker_id: str = ""
    updated_us: int = 0
    media_transport: str = ""  # "" = gb_media_transport
    has_password: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        return out


_JSON = {"status": "status_json", "catalog": "catalog_json", "last_invite": "last_invite_json"}
_PLAIN = ("added", "state", "reason", "transport", "source_host", "source_port", "contact", "expires_us",
          "registered_us", "last_keepalive_us", "keepalive_interval_s", "name", "manufacturer", "model",
          "firmware", "channels", "worker_id", "media_transport")


class GbDeviceStore:
    def __init__(self, engine: Engine, cipher: SecretCipher | None = None) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._cipher = cipher

    # -- operator changes ---------------------------------------------------------------

    def add(self, device_id: str, password: str | None, media_transport: str | None = None) -> bool:
        """Add (or update the password or media transport of) a device; True when it is new.
        ``media_transport``: udp, tcp-passive, tcp-active, or "" for the default (gb_media_transport)."""
        _check_id(device_id)
        if media_transport not in (None, "", "udp", "tcp-passive", "tcp-active"):
            raise ValueError(f"device {device_id}: media transport {media_transport!r} is not udp, tcp-passive "
                             "or tcp-active")
        with self._sessions() as s, s.begin():
            row = s.get(GbDeviceRow, device_id)
            new = row is None
            if row is None:
                row = _new_row(device_id)
                s.add(row)
            row.added = True
            if password is not None:
                row.password = self._seal(password)
            if media_transport is not None:
                row.media_transport = media_transport
            row.updated_us = now_us()
            return new

    def remove(self, device_id: str) -> bool:
        with self._sessions() as s, s.begin():
            row = s.get(GbDeviceRow, device_id)
            if row is None:
                return False
            s.delete(row)
            return True

    def password(self, device_id: str) -> str | None:
        """The device's own password, or None when it has none (``gb_password`` applies)."""
        with self._sessions() as s:
            row = s.get(GbDeviceRow, device_id)
            if row is None or not row.password:
                return None
            return self._cipher.decrypt(row.password) if self._cipher is not None else row.password

    def _seal(self, password: str) -> str:
        if not password:
            return ""
        return self._cipher.encrypt(password) if self._cipher is not None else password

    # -- state written by the SIP server -------------------------------------------------

    def update(self, device_id: str, **changes: Any) -> GbDevice:
        """Set fields of a device (creating its row), e.g. ``state="online", reason=""``."""
        _check_id(device_id)
        if "state" in changes and changes["state"] not in DEVICE_STATES:
            raise ValueError(f"device {device_id}: state {changes['state']!r} is not one of {DEVICE_STATES}")
        with self._sessions() as s, s.begin():
            row = s.get(GbDeviceRow, device_id)
            if row is None:
                row = _new_row(device_id)
                s.add(row)
            for key, value in changes.items():
                if key in _JSON:
                    setattr(row, _JSON[key], json.dumps(value, ensure_ascii=False, sort_keys=True))
                elif key in _PLAIN:
                    setattr(row, key, value)
                else:
                    raise ValueError(f"device {device_id}: no field {key!r}")
            row.updated_us = now_us()
            return _device(row)

    def touch_keepalives(self, beats: dict[str, tuple[int, float]]) -> None:
        """The hot path: (last keepalive time, interval) of many devices in one transaction,
        one UPDATE each and no row loads. Devices without a row are skipped."""
        if not beats:
            return
        with self._sessions() as s, s.begin():
            for device_id, (time_us, interval_s) in beats.items():
                s.execute(update(GbDeviceRow).where(GbDeviceRow.device_id == device_id).values(
                    last_keepalive_us=time_us, keepalive_interval_s=interval_s, updated_us=time_us))

    def merge_json(self, device_id: str, field_name: str, values: dict[str, Any]) -> None:
        """Update keys of one JSON field (``status``, ``catalog``, ``last_invite``)."""
        with self._sessions() as s, s.begin():
            row = s.get(GbDeviceRow, device_id)
            if row is None:
                row = _new_row(device_id)
                s.add(row)
            column = _JSON[field_name]
            current = json.loads(getattr(row, column) or "{}")
            current.update(values)
            setattr(row, column, json.dumps(current, ensure_ascii=False, sort_keys=True))
            row.updated_us = now_us()

    def record_invite(self, device_id: str, *, channel: str, outcome: str, reason: str = "",
                      time_us: int | None = None) -> None:
        """For the media side: the outcome of the last INVITE (``gb doctor`` shows it)."""
        self.update(device_id, last_invite={"time_us": time_us or now_us(), "channel": channel,
                                            "outcome": outcome, "reason": reason})

    # -- reading ------------------------------------------------------------------------

    def get(self, device_id: str) -> GbDevice | None:
        with self._sessions() as s:
            row = s.get(GbDeviceRow, device_id)
            return None if row is None else _device(row)

    def all(self) -> list[GbDevice]:
        with self._sessions() as s:
            return [_device(r) for r in s.scalars(select(GbDeviceRow).order_by(GbDeviceRow.device_id))]


def _check_id(device_id: str) -> None:
    if len(device_id) != 20 or not device_id.isdigit():
        raise ValueError(f"device id {device_id!r}: a GB/T 28181 id has 20 digits")


def _new_row(device_id: str) -> GbDeviceRow:
    return GbDeviceRow(device_id=device_id, password="", added=False, state="unregistered", reason="",
                       transport="", source_host="", source_port=0, contact="", expires_us=0, registered_us=0,
                       last_keepalive_us=0, keepalive_interval_s=0.0, name="", manufacturer="", model="",
                       firmware="", channels=0, status_json="{}", catalog_json="{}", last_invite_json="{}",
                       media_transport="",
                       worker_id="", updated_us=now_us())


def _device(row: GbDeviceRow) -> GbDevice:
    values = {k: getattr(row, k) for k in _PLAIN}
    return GbDevice(device_id=row.device_id, **values,
                    status=json.loads(row.status_json or "{}"), catalog=json.loads(row.catalog_json or "{}"),
                    last_invite=json.loads(row.last_invite_json or "{}"), updated_us=row.updated_us,
                    has_password=bool(row.password))
