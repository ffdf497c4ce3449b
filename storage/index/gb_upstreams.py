"""``UpstreamStore``: the upper GB/T 28181 platforms we cascade to (table ``gb_upstreams``).

``sharpeyes gb upstream add/list/remove`` write it; the SIP server's process reads it (the
cascade in ``streams/cascade``) and writes each platform's registration state back. The
password is sealed with the index's ``SecretCipher``: digest needs the password itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from config.times import now_us
from storage.db.schema import GbUpstreamRow

if TYPE_CHECKING:
    from storage.index.credentials import SecretCipher

UPSTREAM_TRANSPORTS = ("udp", "tcp")


@dataclass
class Upstream:
    platform_id: str
    domain: str
    host: str
    port: int
    transport: str = "udp"
    regions: list[str] = field(default_factory=list)
    state: str = "connecting"
    reason: str = ""
    registered_us: int = 0
    updated_us: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _valid(platform_id: str, domain: str, transport: str, port: int) -> None:
    if len(platform_id) != 20 or not platform_id.isdigit():
        raise ValueError(f"upstream {platform_id!r}: a GB/T 28181 platform id has 20 digits")
    if not domain.isdigit() or len(domain) != 10:
        raise ValueError(f"upstream {platform_id}: domain {domain!r} must be 10 digits (the realm it challenges with)")
    if transport not in UPSTREAM_TRANSPORTS:
        raise ValueError(f"upstream {platform_id}: transport is udp or tcp, not {transport!r}")
    if not 0 < port < 65536:
        raise ValueError(f"upstream {platform_id}: port {port} is not a port")


class UpstreamStore:
    def __init__(self, engine: Engine, cipher: SecretCipher | None = None) -> None:
        self.engine = engine
        self.cipher = cipher
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @staticmethod
    def _view(row: GbUpstreamRow) -> Upstream:
        return Upstream(row.platform_id, row.domain, row.host, row.port, row.transport, json.loads(row.regions or "[]"),
                        row.state, row.reason, row.registered_us, row.updated_us)

    def add(self, platform_id: str, *, domain: str, host: str, port: int, password: str, transport: str = "udp",
            regions: list[str] | None = None) -> Upstream:
        """Add (or replace) an upper platform."""
        _valid(platform_id, domain, transport, port)
        if self.cipher is None:
            raise RuntimeError("UpstreamStore needs the secret key to store a password")
        with self._sessions() as s, s.begin():
            row = s.get(GbUpstreamRow, platform_id) or GbUpstreamRow(platform_id=platform_id)
            row.domain, row.host, row.port, row.transport = domain, host, port, transport
            row.password = self.cipher.encrypt(password)
            row.regions = json.dumps(sorted(set(regions or [])))
            row.state, row.reason, row.registered_us, row.updated_us = "connecting", "added", 0, now_us()
            s.add(row)
        return self._view(row)

    def remove(self, platform_id: str) -> bool:
        with self._sessions() as s, s.begin():
            row = s.get(GbUpstreamRow, platform_id)
            if row is None:
                return False
            s.delete(row)
            return True

    def all(self) -> list[Upstream]:
        with self._sessions() as s:
            return [self._view(r) for r in s.scalars(select(GbUpstreamRow).order_by(GbUpstreamRow.platform_id))]

    def get(self, platform_id: str) -> Upstream | None:
        with self._sessions() as s:
            row = s.get(GbUpstreamRow, platform_id)
            return self._view(row) if row is not None else None

    def password(self, platform_id: str) -> str:
        if self.cipher is None:
            raise RuntimeError("UpstreamStore needs the secret key to read a password")
        with self._sessions() as s:
            row = s.get(GbUpstreamRow, platform_id)
            return self.cipher.decrypt(row.password) if row is not None and row.password else ""

    def set_state(self, platform_id: str, state: str, reason: str, registered: bool = False) -> None:
        with self._sessions() as s, s.begin():
            row = s.get(GbUpstreamRow, platform_id)
            if row is None:
                return
            row.state, row.reason, row.updated_us = state, reason[:500], now_us()
            if registered:
                row.registered_us = row.updated_us
