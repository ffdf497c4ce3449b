"""Shared fixtures: a SQLite index in a tmp dir, a region tree, cameras, one user per role."""

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
from storage.index.registry import Registry
from storage.index.credentials import load_cipher
from streams.access.users import ROLES, UserStore
from streams.app import create_app
from streams.access.guard import AuthState
from streams.context import AppContext
from streams.access.ratelimit import SignInLimiter
from streams.access.tokens import TokenSigner

PASSWORD = "correct horse battery"
CAMERA_PASSWORD = "Cam3raS3cret!x"


class FakeClock:
    """One clock for µs timestamps and monotonic seconds, moved by hand."""

    def __init__(self, start_us: int = 1_800_000_000_000_000):
        self.now = start_us

    def us(self) -> int:
        return self.now

    def seconds(self) -> float:
        return self.now / 1e6

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


def fast_hasher() -> PasswordHasher:
    # Real argon2id, cheap parameters: the tests sign in many times.
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class World:
    data_dir: Path
    engine: object
    registry: Registry
    users: UserStore
    audit: AuditLog
    state: AuthState
    clock: FakeClock
    client: TestClient
    app: object

    def token(self, name: str) -> str:
        return self.state.tokens.issue("access", name)[0]

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(name)}"}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.delenv("SHARPEYES_SECRET_KEY", raising=False)
    settings = Settings(data_dir=tmp_path)
    engine = open_engine(settings.database_url)
    cipher = load_cipher(tmp_path)
    registry = Registry(engine, cipher)
    # county -> towns t1, t2 -> village v1 under t1
    registry.add_region(Region(code="county", name="County"))
    registry.add_region(Region(code="t1", name="Town 1", parent="county"))
    registry.add_region(Region(code="t2", name="Town 2", parent="county"))
    registry.add_region(Region(code="v1", name="Village 1", parent="t1"))
    registry.add_camera(
        Camera(id="cam-in", name="In scope", region="v1", main_url=f"rtsp://admin:{CAMERA_PASSWORD}@10.0.0.5:554/main")
    )
    registry.add_camera(Camera(id="cam-out", name="Out of scope", region="t2", main_url="rtsp://10.0.0.6/main"))
    clock = FakeClock()
    users = UserStore(engine, hasher=fast_hasher(), clock=clock.us)
    log = AuditLog(engine, clock=clock.us)
    state = AuthState(
        users=users,
        audit=log,
        tokens=TokenSigner(cipher.derive("sharpeyes token signing v1"), clock=clock.us),
        limiter=SignInLimiter(clock=clock.seconds),
    )
    for role in ROLES:
        users.add(role, PASSWORD, role, ["*"] if role == "admin" else ["t1"])
    ctx = AppContext(
        settings=settings, index=SegmentIndex(engine), registry=registry, store=None, auth=state  # type: ignore[arg-type]
    )
    app = create_app(ctx)
    with TestClient(app) as client:
        yield World(tmp_path, engine, registry, users, log, state, clock, client, app)
    engine.dispose()  # type: ignore[attr-defined]
