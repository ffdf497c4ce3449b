"""An archive to test against: real segments (see ``recorded``), a registry, users, the app.

Module-scoped: recording takes a couple of seconds, so each test module records once.
Layout (times after ``T0``): run A 0-12 s (segments 0-4, 4-8, 8-12), a gap 12-16 s
(row: offline), run B 16-24 s (segments 16-20, 20-24). GOP 1 s, 25 fps, 640x360.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from config.cameras import Camera, Region
from config.settings import Settings
from streams.access.audit import AuditLog
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex
from storage.objects.local import LocalObjectStore
from storage.objects.store import ObjectStore
from storage.index.registry import Registry
from storage.index.credentials import load_cipher
from streams.access.users import UserStore
from streams.app import create_app
from streams.access.guard import AuthState
from streams.context import AppContext
from streams.access.ratelimit import SignInLimiter
from streams.access.tokens import TokenSigner
from tests.archive.recorded import T0, record

PASSWORD = "correct horse battery"
GAP = (T0 + 12_000_000, T0 + 16_000_000)


@dataclass
class Archive:
    data_dir: Path
    settings: Settings
    index: SegmentIndex
    store: ObjectStore
    registry: Registry
    state: AuthState
    audit: AuditLog
    ctx: AppContext
    client: TestClient

    def headers(self, name: str = "inv") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.state.tokens.issue('access', name)[0]}"}

    def get(self, path: str, name: str = "inv", **kw):  # type: ignore[no-untyped-def]
        headers = {**self.headers(name), **kw.pop("headers", {})}
        return self.client.get(path, headers=headers, **kw)


def build_archive(data_dir: Path, store: ObjectStore | None = None, kind: str = "h264") -> Archive:
    """``kind`` "h264_bframes": the camera sends B-frames (the same layout and frame codes)."""
    settings = Settings(data_dir=data_dir, segment_target_seconds=4)
    engine = open_engine(settings.database_url)
    index = SegmentIndex(engine)
    store = store or LocalObjectStore(data_dir / "objects")
    record(index, store, data_dir / "spool", runs=[(0, 300), (400, 200)], kind=kind)
    index.add_gap("cam-1", "main", GAP[0], GAP[1], "offline", "no answer on 10.0.0.5:554")
    cipher = load_cipher(data_dir)
    registry = Registry(engine, cipher)
    registry.add_region(Region(code="county", name="County"))
    registry.add_region(Region(code="t2", name="Town 2", parent="county"))
    registry.add_camera(Camera(id="cam-1", name="Gate", region="county", main_url="rtsp://10.0.0.5/main"))
    registry.add_camera(Camera(id="cam-2", name="Idle", region="county", main_url="rtsp://10.0.0.7/main"))
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("inv", PASSWORD, "investigator", ["*"])
    users.add("view", PASSWORD, "viewer", ["*"])
    users.add("far", PASSWORD, "investigator", ["t2"])
    log = AuditLog(engine)
    state = AuthState(users=users, audit=log, tokens=TokenSigner(cipher.derive("sharpeyes token signing v1")),
                      limiter=SignInLimiter())
    ctx = AppContext(settings=settings, index=index, registry=registry, store=store, auth=state)
    client = TestClient(create_app(ctx))
    return Archive(data_dir, settings, index, store, registry, state, log, ctx, client)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    a = build_archive(tmp_path_factory.mktemp("archive"))
    with a.client:
        yield a
    a.index.engine.dispose()
