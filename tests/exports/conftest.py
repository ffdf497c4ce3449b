"""Recorded segments made by the real Segmenter and Uploader, on a local store or moto S3,
and an app around them with one user per role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient
from minio import Minio

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.recording.access_units import AccessUnitJoiner
from ingest.recording.segmenter import Segmenter
from ingest.recording.spool import Spool
from ingest.recording.uploader import Uploader
from streams.access.audit import AuditLog
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex
from storage.objects.local import LocalObjectStore
from storage.index.registry import Registry
from storage.objects.s3 import S3ObjectStore
from storage.db.schema import SegmentRow
from storage.index.credentials import load_cipher
from streams.access.users import ROLES, UserStore
from streams.app import create_app
from streams.access.guard import AuthState
from streams.context import AppContext
from streams.access.ratelimit import SignInLimiter
from streams.access.tokens import TokenSigner
from tests.auth.conftest import PASSWORD, FakeClock, fast_hasher
from tests.support.packets import encode

T0 = 1_800_000_000_000_000  # the recording's wall clock start, µs
CAMERA = "cam-a"


def record(store: Any, index: SegmentIndex, spool_dir: Path, *, camera_id: str = CAMERA, seconds: float = 8.0,
           segment_s: float = 2.0, start_us: int = T0) -> list[SegmentRow]:
    """Encode ``seconds`` of 320x180 video (1 s GOPs), cut it with the real Segmenter and
    upload it with the real Uploader; returns the index rows, oldest first."""
    enc = encode(seconds=seconds, gop=25, size=(320, 180))
    spool = Spool(spool_dir, 1 << 30)
    now = [start_us]
    seg = Segmenter(
        camera_id, "main", spool, target_us=int(segment_s * 1e6), clock=lambda: now[0], on_closed=lambda e: None
    )
    seg.start_input(enc.video, enc.audio)
    joiner = AccessUnitJoiner(frame_ticks=3600)
    first = enc.video_packets[0].pts
    for p in enc.video_packets:
        now[0] = start_us + int((p.pts - first) * p.time_base * 1e6)
        for au, arrival in joiner.push(p, now[0]):
            seg.push_video(au, arrival)
    for au, arrival in joiner.flush():
        seg.push_video(au, arrival)
    seg.end_run()
    uploader = Uploader(spool, store, index)
    assert uploader.drain_once() > 0
    return index.segments(camera_id, "main")


@dataclass
class Site:
    """One sharpeyes site for tests: settings, index, registry, store, auth and an app client."""

    settings: Settings
    engine: Any
    index: SegmentIndex
    registry: Registry
    store: Any
    users: UserStore
    audit: AuditLog
    state: AuthState
    clock: FakeClock
    ctx: AppContext
    client: TestClient
    segments: list[SegmentRow]

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.state.tokens.issue('access', name)[0]}"}


def _site(tmp_path: Path, store: Any) -> Iterator[Site]:
    settings = Settings(data_dir=tmp_path)
    engine = open_engine(settings.database_url)
    registry = Registry(engine, load_cipher(tmp_path))
    registry.add_region(Region(code="county", name="County"))
    registry.add_region(Region(code="t1", name="Town 1", parent="county"))
    registry.add_region(Region(code="t2", name="Town 2", parent="county"))
    registry.add_camera(Camera(id=CAMERA, name="Gate A", region="t1", main_url="rtsp://10.0.0.5/main"))
    registry.add_camera(Camera(id="cam-out", name="Out of scope", region="t2", main_url="rtsp://10.0.0.6/main"))
    index = SegmentIndex(engine)
    segments = record(store, index, tmp_path / "spool")
    clock = FakeClock()
    users = UserStore(engine, hasher=fast_hasher(), clock=clock.us)
    log = AuditLog(engine, clock=clock.us)
    state = AuthState(
        users=users,
        audit=log,
        tokens=TokenSigner(load_cipher(tmp_path).derive("sharpeyes token signing v1"), clock=clock.us),
        limiter=SignInLimiter(clock=clock.seconds),
    )
    for role in ROLES:
        users.add(role, PASSWORD, role, ["*"] if role == "admin" else ["t1"])
    ctx = AppContext(settings=settings, index=index, registry=registry, store=store, auth=state)
    with TestClient(create_app(ctx)) as client:
        yield Site(settings, engine, index, registry, store, users, log, state, clock, ctx, client, segments)
    engine.dispose()


@pytest.fixture
def local_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A site on the local object store with 8 s of recording (4 segments of 2 s) on ``cam-a``."""
    monkeypatch.delenv("SHARPEYES_SECRET_KEY", raising=False)
    yield from _site(tmp_path, LocalObjectStore(tmp_path / "objects"))


def minio_client(s3_server: Any) -> Minio:
    return Minio(s3_server.endpoint, access_key=s3_server.access_key, secret_key=s3_server.secret_key,
                 secure=False, region=s3_server.region)


@pytest.fixture
def locked_s3_site(tmp_path: Path, s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A site on a moto S3 bucket created with object lock."""
    monkeypatch.delenv("SHARPEYES_SECRET_KEY", raising=False)
    s3_server.start()
    bucket = s3_server.new_bucket_name()
    minio_client(s3_server).make_bucket(bucket, object_lock=True)
    store = S3ObjectStore(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, bucket, region=s3_server.region
    )
    yield from _site(tmp_path, store)


@pytest.fixture
def s3_site(tmp_path: Path, s3_server: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A site on a plain moto S3 bucket (no object lock)."""
    monkeypatch.delenv("SHARPEYES_SECRET_KEY", raising=False)
    store = S3ObjectStore(
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key, s3_bucket, region=s3_server.region
    )
    yield from _site(tmp_path, store)
