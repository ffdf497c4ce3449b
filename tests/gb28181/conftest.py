"""Fixtures: a running GB/T 28181 device server (``GbServer``) on a fresh index."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from config.cameras import Region
from config.settings import Settings
from ingest.gb28181.registrar import RegisterRateLimit
from ingest.gb28181.service import GbServer, GbService
from ingest.gb28181.sip import Timers
from storage.index.credentials import load_cipher
from storage.index.gb_devices import GbDeviceStore
from storage.index.registry import Registry
from streams.access.audit import AuditLog

DEVICE = "34020000001320000001"      # an NVR
CHANNELS = [("34010203001310000001", "东门一号", "34010203"),     # a registered village
            ("34010203001310000002", "西街路口", "34010203"),
            ("34010299001320000003", "村委会大院", "34010299")]   # an unknown village: under 340102


@dataclass
class Gb:
    server: GbServer
    service: GbService
    registry: Registry
    devices: GbDeviceStore
    audit: AuditLog
    events: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.service.endpoint.port

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return self.server.call(coro).result(timeout)


@pytest.fixture
def gb_settings(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("SHARPEYES_SECRET_KEY", raising=False)
    return Settings(data_dir=tmp_path, database_url=database_url, gb_sip_bind="127.0.0.1:0", gb_password="",
                    worker_id="w1")


def start_gb(settings: Settings, engine: Any, *, rate_limit: RegisterRateLimit | None = None,
             catalog_idle: float = 1.0) -> Gb:
    cipher = load_cipher(settings.data_dir)  # the CLI on the same data dir reads the same key
    registry = Registry(engine, cipher)
    devices = GbDeviceStore(engine, cipher)
    audit = AuditLog(engine)

    def write_audit(action: str, outcome: str, device_id: str, ip: str, detail: str) -> None:
        audit.append(user=f"gb:{device_id}", role="device", client_ip=ip, action=action, outcome=outcome,
                     detail=detail)
    service = GbService(settings, registry, devices, audit=write_audit, timers=Timers(t1=0.1, t2=1.0),
                        catalog_idle=catalog_idle, query_timeout=1.5, monitor_interval=0.2, rate_limit=rate_limit)
    gb = Gb(GbServer(service), service, registry, devices, audit)
    service.add_listener(lambda d, s, r: gb.events.append((d, s, r)))
    gb.server.start()
    return gb


@pytest.fixture
def gb(gb_settings: Settings, index_engine: Any) -> Iterator[Gb]:
    registry = Registry(index_engine)
    registry.add_region(Region(code="340102", name="蜀山区"))
    registry.add_region(Region(code="34010203", name="南七村", parent="340102"))
    server = start_gb(gb_settings, index_engine)
    try:
        yield server
    finally:
        server.server.close()
