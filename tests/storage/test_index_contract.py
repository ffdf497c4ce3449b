"""The index and registry behave the same on SQLite and PostgreSQL (``database_url``)."""

from __future__ import annotations

import hashlib

import pytest
from alembic import command
from sqlalchemy import Engine, inspect

from config.cameras import Camera, Region
from storage import Keyframe, Registry, RegistryError, SegmentIndex, SegmentRecord, open_engine, pack_keyframes
from storage.db.migrations import alembic_config
from storage.db.schema import GapRef

TABLES = {"regions", "cameras", "init_segments", "segments", "gaps", "registry_state"}
CAM = "34020000001320000001"
S = 1_000_000  # one second in microseconds


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def record(start_s: int, end_s: int, camera: str = CAM, stream: str = "main", init: str = "init-a") -> SegmentRecord:
    return SegmentRecord(
        camera_id=camera,
        stream=stream,
        start_us=start_s * S,
        end_us=end_s * S,
        object_key=f"{camera}/{stream}/{start_s}.mp4",
        bytes=1000,
        codec="h264",
        width=1920,
        height=1080,
        audio_codec=None,
        sha256=digest(f"{camera}{stream}{start_s}"),
        init_sha256=digest(init),
        init_data=init.encode(),
        keyframes=pack_keyframes([Keyframe(0, 0), Keyframe(2 * S, 500)]),
    )


@pytest.fixture
def engine(database_url: str) -> Engine:
    eng = open_engine(database_url)
    yield eng
    eng.dispose()


# -- migrations -----------------------------------------------------------------


def test_migrations_from_empty_and_back(engine: Engine) -> None:
    assert TABLES <= set(inspect(engine).get_table_names())
    cfg = alembic_config(engine)
    command.downgrade(cfg, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    command.upgrade(cfg, "head")
    assert TABLES <= set(inspect(engine).get_table_names())
    # Running the upgrade again (every process start does) is a no-op.
    open_engine(engine.url.render_as_string(hide_password=False)).dispose()
    SegmentIndex(engine).add_segment(record(0, 60))


def test_migrations_match_models(engine: Engine) -> None:
    # A model changed without a migration (or the reverse) shows up here.
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.db.schema import Base

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    if engine.dialect.name == "postgresql":
        # segments and gaps are partitioned there (migrations 0015-0017, storage.db.partitions):
        # segments' primary key (camera_seq, stream, start_us) INCLUDE (end_us) and a BRIN on
        # start_us stand for the model's btree indexes; the months are tables of their own.
        from storage.db.partitions import PARTITIONED

        def partitioning(d: tuple) -> bool:  # type: ignore[type-arg]
            table = d[1].table.name if d[0] in ("add_index", "remove_index") else getattr(d[1], "name", "")
            months = any(table.startswith(f"{t}_p") or table == f"{t}_default" for t in PARTITIONED)
            return table == "segments" and d[0] in ("add_index", "remove_index") or months
        diff = [d for d in diff if not partitioning(d)]
    assert diff == []


def test_index_fixture_engine(index_engine: Engine) -> None:
    assert TABLES <= set(inspect(index_engine).get_table_names())


# -- segments -------------------------------------------------------------------


def test_add_segment_is_idempotent(engine: Engine) -> None:
    idx = SegmentIndex(engine)
    first = idx.add_segment(record(0, 60))
    again = idx.add_segment(record(0, 60))
    assert again.id == first.id
    assert idx.segment_count() == 1
    # Same camera and start on the other stream, or another camera: new rows.
    idx.add_segment(record(0, 60, stream="sub"))
    idx.add_segment(record(0, 60, camera="cam-2"))
    assert idx.segment_count() == 3


def test_segments_overlap_semantics(engine: Engine) -> None:
    idx = SegmentIndex(engine)
    for start in (0, 60, 120, 240):  # a hole from 180 to 240
        idx.add_segment(record(start, start + 60))

    def starts(a: int | None, b: int | None) -> list[int]:
        return [r.start_us // S for r in idx.segments(CAM, "main", None if a is None else a * S, None if b is None else b * S)]

    assert starts(None, None) == [0, 60, 120, 240]
    assert starts(60, 120) == [60]  # touching edges do not overlap: [60,120) vs [0,60) and [120,180)
    assert starts(59, 121) == [0, 60, 120]
    assert starts(180, 240) == []  # exactly the hole
    assert starts(179, 240) == [120]
    assert starts(300, None) == []
    assert starts(None, 1) == [0]
    assert starts(30, 31) == [0]  # a one-second range inside a segment
    assert idx.segments(CAM, "sub") == []
    assert idx.segments("other") == []


def test_last_segment(engine: Engine) -> None:
    idx = SegmentIndex(engine)
    assert idx.last_segment(CAM, "main") is None
    for start in (120, 0, 60):
        idx.add_segment(record(start, start + 60))
    last = idx.last_segment(CAM, "main")
    assert last is not None and last.start_us == 120 * S
    assert idx.last_segment(CAM, "sub") is None


def test_init_segments_shared(engine: Engine) -> None:
    idx = SegmentIndex(engine)
    a = idx.add_segment(record(0, 60, init="init-a"))
    b = idx.add_segment(record(60, 120, init="init-a"))
    c = idx.add_segment(record(120, 180, init="init-b"))
    assert a.init_sha256 == b.init_sha256 != c.init_sha256
    assert idx.init_segment(digest("init-a")) == b"init-a"
    assert idx.init_segment(digest("init-b")) == b"init-b"
    with idx.session() as s:
        from sqlalchemy import func, select

        from storage.db.schema import InitSegmentRow

        assert s.scalar(select(func.count()).select_from(InitSegmentRow)) == 2
    with pytest.raises(KeyError):
        idx.init_segment(digest("missing"))


def test_delete_segments(engine: Engine) -> None:
    idx = SegmentIndex(engine)
    rows = [idx.add_segment(record(s, s + 60)) for s in (0, 60, 120)]
    idx.delete_segments([rows[0], rows[2]])
    assert [r.start_us for r in idx.all_segments()] == [60 * S]


# -- gaps -----------------------------------------------------------------------


def test_gaps_open_reason_close(engine: Engine) -> None:
    idx = SegmentIndex(engine)
    closed = idx.add_gap(CAM, "main", 10 * S, 20 * S, "network", "connection reset")
    gap = idx.open_gap(CAM, "main", 100 * S, "offline")
    assert [g.ref for g in idx.open_gaps(CAM, "main")] == [gap]
    assert idx.open_gaps(CAM, "sub") == []
    idx.set_gap_reason(gap, "unauthorized", "401 from camera")
    # An open gap runs to "now": any range after its start finds it.
    found = idx.gaps(CAM, "main", 1000 * S, 2000 * S)
    assert [(g.ref, g.reason, g.detail, g.end_us) for g in found] == [(gap, "unauthorized", "401 from camera", None)]
    assert [g.ref for g in idx.gaps(CAM)] == [closed, gap]
    assert [g.id for g in idx.gaps(CAM, "main", 20 * S, 100 * S)] == []  # both edges touch only
    assert [g.ref for g in idx.gaps(CAM, "main", 19 * S, 101 * S)] == [closed, gap]
    idx.close_gap(gap, 150 * S)
    assert idx.open_gaps(CAM, "main") == []
    assert [g.id for g in idx.gaps(CAM, "main", 1000 * S, 2000 * S)] == []
    assert idx.gaps(CAM, "main", 149 * S, 200 * S)[0].end_us == 150 * S


def test_bad_gap_reason_rejected(engine: Engine) -> None:
    idx = SegmentIndex(engine)
    with pytest.raises(ValueError, match="unknown gap reason"):
        idx.open_gap(CAM, "main", 0, "aliens")
    with pytest.raises(ValueError):
        idx.add_gap(CAM, "main", 0, 1, "")
    gap = idx.open_gap(CAM, "main", 0, "offline")
    with pytest.raises(ValueError):
        idx.set_gap_reason(gap, "because")
    assert idx.gaps(CAM)[0].reason == "offline"
    assert len(idx.gaps(CAM)) == 1


# -- registry -------------------------------------------------------------------


def camera(cam_id: str = CAM, region: str = "village-1", **kw: object) -> Camera:
    return Camera(id=cam_id, name=f"camera {cam_id}", region=region, main_url="rtsp://10.0.0.1/main", **kw)  # type: ignore[arg-type]


@pytest.fixture
def registry(engine: Engine) -> Registry:
    reg = Registry(engine)
    reg.add_region(Region(code="county", name="County"))
    reg.add_region(Region(code="town-1", name="Town 1", parent="county"))
    reg.add_region(Region(code="village-1", name="Village 1", parent="town-1"))
    reg.add_region(Region(code="town-2", name="Town 2", parent="county"))
    return reg


def test_regions_with_parents(registry: Registry) -> None:
    assert {(r.code, r.parent) for r in registry.regions()} == {
        ("county", None),
        ("town-1", "county"),
        ("village-1", "town-1"),
        ("town-2", "county"),
    }
    with pytest.raises(RegistryError, match="parent"):
        registry.add_region(Region(code="orphan", name="Orphan", parent="nowhere"))
    with pytest.raises(RegistryError, match="already exists"):
        registry.add_region(Region(code="town-1", name="Again"))
    assert len(registry.regions()) == 4


def test_region_subtree(registry: Registry) -> None:
    assert registry.region_subtree("county") == {"county", "town-1", "village-1", "town-2"}
    assert registry.region_subtree("town-1") == {"town-1", "village-1"}
    assert registry.region_subtree("village-1") == {"village-1"}
    registry.add_camera(camera(CAM, "village-1"))
    registry.add_camera(camera("cam-town-2", "town-2"))
    assert [c.id for c in registry.cameras("town-1")] == [CAM]
    assert [c.id for c in registry.cameras("county")] == [CAM, "cam-town-2"]
    assert [c.id for c in registry.cameras()] == [CAM, "cam-town-2"]


def test_add_camera_refusals(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="region nowhere does not exist"):
        registry.add_camera(camera(region="nowhere"))
    registry.add_camera(camera())
    with pytest.raises(RegistryError, match="already registered"):
        registry.add_camera(camera())
    assert [c.id for c in registry.cameras()] == [CAM]
    assert registry.camera(CAM) == camera()


def test_add_cameras_all_or_nothing(registry: Registry) -> None:
    good = [camera(f"cam-{i}") for i in range(5)]
    with pytest.raises(RegistryError, match="cam-bad"):
        registry.add_cameras([*good, camera("cam-bad", "nowhere")])
    assert registry.cameras() == []
    registry.add_cameras(good)
    assert len(registry.cameras()) == 5


def test_add_cameras_duplicate_within_batch(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="cam-1"):
        registry.add_cameras([camera("cam-1"), camera("cam-2"), camera("cam-1")])
    assert registry.cameras() == []


def test_update_camera(registry: Registry) -> None:
    registry.add_camera(camera())
    updated = registry.update_camera(CAM, name="gate", sub_url="rtsp://10.0.0.1/sub", region="town-2")
    assert registry.camera(CAM) == updated
    assert (updated.name, updated.sub_url, updated.region) == ("gate", "rtsp://10.0.0.1/sub", "town-2")
    with pytest.raises(RegistryError):
        registry.update_camera(CAM, main_url="http://10.0.0.1/main")
    with pytest.raises(RegistryError, match="cannot be changed"):
        registry.update_camera(CAM, id="cam-other")
    with pytest.raises(RegistryError, match="does not exist"):
        registry.update_camera(CAM, region="nowhere")
    with pytest.raises(RegistryError):
        registry.update_camera(CAM, retention_days=0)
    with pytest.raises(RegistryError):
        registry.update_camera(CAM, no_such_field=1)
    with pytest.raises(RegistryError, match="not registered"):
        registry.update_camera("cam-missing", name="x")
    assert registry.camera(CAM) == updated  # refused edits wrote nothing


def test_remove_camera(registry: Registry) -> None:
    registry.add_camera(camera())
    registry.remove_camera(CAM)
    assert registry.camera(CAM) is None
    with pytest.raises(RegistryError, match="not registered"):
        registry.remove_camera(CAM)


def test_version_changes(registry: Registry) -> None:
    seen = {registry.version()}

    def changed() -> None:
        v = registry.version()
        assert v not in seen
        seen.add(v)

    registry.add_camera(camera("cam-a"))
    changed()
    registry.add_camera(camera("cam-b"))
    changed()
    registry.update_camera("cam-a", name="renamed")
    changed()
    registry.update_camera("cam-b", enabled=False)
    changed()
    registry.remove_camera("cam-a")
    changed()
    registry.add_camera(camera("cam-c"))
    changed()


def test_version_changes_within_one_clock_tick(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    # Coarse or stepped-back clocks: two edits in the same microsecond must still
    # each change the version, or a poller misses the second one.
    import storage.index.registry

    monkeypatch.setattr(storage.index.registry, "now_us", lambda: 1_000_000)
    registry.add_camera(camera("cam-a"))
    registry.add_camera(camera("cam-b"))
    v1 = registry.version()
    registry.update_camera("cam-a", name="one")
    v2 = registry.version()
    registry.update_camera("cam-b", name="two")
    v3 = registry.version()
    registry.remove_camera("cam-b")
    registry.add_camera(camera("cam-c"))
    v4 = registry.version()
    assert len({v1, v2, v3, v4}) == 4


def test_add_segment_concurrent_duplicates(engine: Engine) -> None:
    # After a lease takeover two workers may index the same segment at once:
    # both must get the one row, neither an IntegrityError.
    import threading

    idx = SegmentIndex(engine)
    barrier = threading.Barrier(6)
    results: list[object] = []

    def add(start: int) -> None:
        barrier.wait()
        try:
            results.append(idx.add_segment(record(start, start + 60)).id)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            results.append(exc)

    for start in range(0, 600, 60):
        results.clear()
        threads = [threading.Thread(target=add, args=(start,)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(results)) == 1, results
    assert idx.segment_count() == 10


def test_in_memory_sqlite_is_one_database() -> None:
    # sqlite:// is handy in tools and tests; every thread must see the migrated schema.
    import threading

    engine = open_engine("sqlite://")
    idx = SegmentIndex(engine)
    idx.add_segment(record(0, 60))
    counts: list[object] = []

    def count() -> None:
        try:
            counts.append(idx.segment_count())
        except Exception as exc:  # noqa: BLE001
            counts.append(exc)

    t = threading.Thread(target=count)
    t.start()
    t.join()
    assert counts == [1]


def test_gap_updates_checked(engine: Engine) -> None:
    # A wrong id or a reversed span is a caller bug; updating nothing silently hid it.
    idx = SegmentIndex(engine)
    gap = idx.open_gap(CAM, "main", 100 * S, "offline")
    with pytest.raises(KeyError):
        idx.close_gap(GapRef(gap.id + 1000, gap.start_us), 200 * S)
    with pytest.raises(KeyError):
        idx.set_gap_reason(GapRef(gap.id + 1000, gap.start_us), "network")
    with pytest.raises(KeyError):  # the right id with another start is another gap
        idx.close_gap(GapRef(gap.id, gap.start_us - 1), 200 * S)
    with pytest.raises(ValueError):
        idx.close_gap(gap, 99 * S)
    with pytest.raises(ValueError):
        idx.add_gap(CAM, "main", 10 * S, 5 * S, "network")
    assert idx.open_gaps(CAM, "main")[0].ref == gap
    idx.close_gap(gap, 100 * S)  # zero length is allowed: the camera came straight back
    assert idx.open_gaps(CAM, "main") == []
