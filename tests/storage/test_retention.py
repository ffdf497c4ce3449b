"""The retention cleaner: 40 simulated days on an injected clock, against a real index
(SQLite and PostgreSQL) and a real local object store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from config.cameras import Camera, Region
from storage.archive.holds import HoldStore
from storage.index.segments import SegmentIndex, SegmentRecord
from storage.objects.local import LocalObjectStore
from storage.index.registry import Registry, RegistryError
from storage.archive.retention import DAY_US, RetentionCleaner, RetentionPolicy, lifecycle_rules
from storage.db.schema import RetentionDeleteRow
from storage.objects.open import segment_key

T0 = 1_800_000_000_000_000
HOUR_US = 3_600_000_000
SEG_BYTES = 1000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def _camera(cid: str, days: int = 30, region: str = "r1", override: bool = False) -> Camera:
    return Camera(id=cid, name=cid, region=region, main_url="rtsp://10.0.0.1/x", retention_days=days,
                  retention_override=override)


class World:
    def __init__(self, engine, tmp: Path):  # type: ignore[no-untyped-def]
        self.index = SegmentIndex(engine)
        self.registry = Registry(engine)
        self.registry.add_region(Region(code="county", name="County"))
        self.registry.add_region(Region(code="r1", name="R1", parent="county"))
        self.registry.add_region(Region(code="r2", name="R2", parent="county"))
        self.store = LocalObjectStore(tmp / "objects")
        self.clock = Clock()
        self.holds = HoldStore(engine)
        self.free = 10**12

    def record_hours(self, cam: str, start_us: int, hours: int, per_segment: int = 1) -> None:
        """Segments of ``per_segment`` hours, object and row, as the uploader writes them."""
        seg_us = per_segment * HOUR_US
        for h in range(hours // per_segment):
            s = start_us + h * seg_us
            key = segment_key(cam, "main", s, seg_us // 1000)
            data = cam.encode() + s.to_bytes(8, "big") + b"\0" * (SEG_BYTES - len(cam) - 8)
            sha = hashlib.sha256(data).hexdigest()
            self.store.put_bytes(key, data, sha)
            self.index.add_segment(SegmentRecord(
                camera_id=cam, stream="main", start_us=s, end_us=s + seg_us, object_key=key, bytes=len(data),
                codec="h264", width=640, height=360, audio_codec=None, sha256=sha,
                init_sha256="0" * 64, init_data=b"init", keyframes=b""))

    def cleaner(self, **policy) -> RetentionCleaner:  # type: ignore[no-untyped-def]
        # No is_held given: the cleaner must consult the real legal holds by default.
        return RetentionCleaner(self.index, self.store, self.registry.cameras, clock=self.clock,
                                policy=RetentionPolicy(**policy),
                                region_of=self.registry.region_subtree, free_bytes=lambda: self.free)

    def objects(self, cam: str) -> set[str]:
        return {o.key for o in self.store.list(f"{cam}/")}

    def rows(self, cam: str) -> set[str]:
        return {r.object_key for r in self.index.segments(cam)}


@pytest.fixture
def world(index_engine, tmp_path: Path) -> World:  # type: ignore[no-untyped-def]
    return World(index_engine, tmp_path)


def test_forty_days_keep_exactly_retention_days_and_record_one_merged_gap(world: World) -> None:
    world.registry.add_camera(_camera("cam-a", days=30))
    world.registry.add_camera(_camera("cam-b", days=35))
    cleaner = world.cleaner()
    for day in range(40):
        for cam in ("cam-a", "cam-b"):
            world.record_hours(cam, T0 + day * DAY_US, 24, per_segment=6)  # few rows: fast on 2 cores
        world.clock.now = T0 + (day + 1) * DAY_US
        cleaner.run_once()
    now = world.clock.now
    for cam, days in (("cam-a", 30), ("cam-b", 35)):
        segs = world.index.segments(cam)
        assert segs[0].start_us == now - days * DAY_US, cam  # nothing younger went, nothing older stayed
        assert len(segs) == days * 4
        assert world.objects(cam) == world.rows(cam)  # every row has its object, every object its row
        gaps = [g for g in world.index.gaps(cam) if g.reason == "retention"]
        assert [(g.start_us, g.end_us) for g in gaps] == [(T0, now - days * DAY_US)]  # merged into one
    assert cleaner.total.by_rule["age"] == (10 + 5) * 4


def test_held_segments_survive_age_quota_and_low_space(world: World) -> None:
    world.registry.add_camera(_camera("cam-a"))
    world.record_hours("cam-a", T0, 24 * 3)
    world.holds.place("cam-a", T0 + 2 * HOUR_US + 1, T0 + 3 * HOUR_US, "case 2026-17", "investigator")  # inside hour 2
    world.clock.now = T0 + 100 * DAY_US
    world.free = 0  # and the disk is full
    r = world.cleaner(camera_quota_bytes=SEG_BYTES, min_free_bytes=1).run_once()
    left = world.index.segments("cam-a")
    assert [s.start_us for s in left] == [T0 + 2 * HOUR_US]
    assert world.objects("cam-a") == world.rows("cam-a")
    assert r.held_skipped >= 1
    gaps = sorted((g.start_us, g.end_us) for g in world.index.gaps("cam-a") if g.reason == "retention")
    assert gaps == [(T0, T0 + 2 * HOUR_US), (T0 + 3 * HOUR_US, T0 + 72 * HOUR_US)]


def test_camera_and_region_quotas_delete_oldest_first(world: World) -> None:
    world.registry.add_camera(_camera("cam-a", region="r1"))
    world.registry.add_camera(_camera("cam-b", region="r1"))
    world.registry.add_camera(_camera("cam-c", region="r2"))
    for cam in ("cam-a", "cam-b", "cam-c"):
        world.record_hours(cam, T0, 10)
    world.clock.now = T0 + DAY_US
    r = world.cleaner(camera_quota_bytes=8 * SEG_BYTES, region_quota_bytes={"county": 20 * SEG_BYTES}).run_once()
    assert r.by_rule == {"camera_quota": 6, "region_quota": 4}
    # Each camera down to its newest 8 hours, then the county's oldest until 20 remain.
    remaining = {cam: [s.start_us for s in world.index.segments(cam)] for cam in ("cam-a", "cam-b", "cam-c")}
    assert sum(len(v) for v in remaining.values()) == 20
    assert all(v == sorted(v) and v[-1] == T0 + 9 * HOUR_US for v in remaining.values())
    assert min(v[0] for v in remaining.values()) >= T0 + 3 * HOUR_US


def test_low_space_guard_deletes_oldest_across_cameras_until_free(world: World) -> None:
    world.registry.add_camera(_camera("cam-a"))
    world.registry.add_camera(_camera("cam-b"))
    world.record_hours("cam-a", T0, 5)
    world.record_hours("cam-b", T0 + HOUR_US // 2, 5)
    world.free = 0
    cleaner = world.cleaner(min_free_bytes=3 * SEG_BYTES)
    store_delete = world.store.delete

    def counting_delete(key: str) -> None:
        store_delete(key)
        world.free += SEG_BYTES  # what deleting really frees on the disk

    world.store.delete = counting_delete  # type: ignore[method-assign]
    world.clock.now = T0 + DAY_US
    r = cleaner.run_once()
    assert r.by_rule == {"low_space": 3}
    assert [s.start_us for s in world.index.segments("cam-a")] == [T0 + h * HOUR_US for h in (2, 3, 4)]
    assert [s.start_us for s in world.index.segments("cam-b")][0] == T0 + HOUR_US + HOUR_US // 2


def test_a_crash_between_row_and_object_is_finished_on_the_next_run(world: World) -> None:
    """Row removed and key journalled, then the process died before the object delete."""
    world.registry.add_camera(_camera("cam-a"))
    world.record_hours("cam-a", T0, 2)
    cleaner = world.cleaner()
    row = world.index.segments("cam-a")[0]
    cleaner._remove_row(row)  # step 1 only: what a kill -9 right after it leaves
    assert row.object_key in world.objects("cam-a") and row.object_key not in world.rows("cam-a")
    r = world.cleaner().run_once()  # a new process
    assert r.journal_finished == 1
    assert world.objects("cam-a") == world.rows("cam-a")
    with world.index.session() as s:
        assert list(s.scalars(select(RetentionDeleteRow))) == []


def test_index_only_mode_leaves_objects_to_bucket_lifecycle(world: World) -> None:
    world.registry.add_camera(_camera("cam-a"))
    world.record_hours("cam-a", T0, 2)
    world.clock.now = T0 + 31 * DAY_US
    world.cleaner(index_only=True).run_once()
    assert world.rows("cam-a") == set() and len(world.objects("cam-a")) == 2


def test_retention_floor_needs_an_explicit_override(world: World) -> None:
    with pytest.raises(ValidationError, match="30-day floor"):
        _camera("cam-a", days=7)
    world.registry.add_camera(_camera("cam-a"))
    with pytest.raises(RegistryError, match="retention_override"):
        world.registry.update_camera("cam-a", retention_days=7)
    cam = world.registry.update_camera("cam-a", retention_days=7, retention_override=True)
    assert world.registry.camera("cam-a") == cam and cam.retention_days == 7
    world.record_hours("cam-a", T0, 24 * 10)
    world.clock.now = T0 + 10 * DAY_US
    world.cleaner().run_once()
    assert world.index.segments("cam-a")[0].start_us == T0 + 3 * DAY_US


def test_lifecycle_rules_per_camera_prefix_outlast_retention() -> None:
    rules = lifecycle_rules([_camera("cam-b", days=90), _camera("cam-a")])
    assert rules == [
        {"id": "sharpeyes-retention-cam-a", "prefix": "cam-a/", "days": 31},
        {"id": "sharpeyes-retention-cam-b", "prefix": "cam-b/", "days": 91},
    ]


def test_lifecycle_rules_apply_to_a_real_s3_bucket(s3_server, s3_bucket: str) -> None:  # type: ignore[no-untyped-def]
    from storage.archive.retention import apply_lifecycle
    from storage.objects.s3 import S3ObjectStore

    store = S3ObjectStore(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, s3_bucket,
                          region=s3_server.region)
    apply_lifecycle(store._client, s3_bucket, lifecycle_rules([_camera("cam-a", days=45)]))
    config = store._client.get_bucket_lifecycle(s3_bucket)
    assert [(r.rule_id, r.rule_filter.prefix, r.expiration.days) for r in config.rules] == [
        ("sharpeyes-retention-cam-a", "cam-a/", 46)]


def test_whole_months_are_dropped_as_partitions_unless_held(index_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL: with index_only (lifecycle rules delete the objects), a month past every
    camera's retention is dropped as a partition, and its month of gaps with it (the
    retention gap written for it too: nothing of the month is kept); a held month stays."""
    if index_engine.dialect.name != "postgresql":
        pytest.skip("segments is partitioned on PostgreSQL only")
    from storage.db.partitions import ensure_partitions, month_start_us, partitions

    world = World(index_engine, tmp_path)
    world.registry.add_camera(_camera("cam-a", days=30))
    jan, feb, mar = month_start_us(2026, 1), month_start_us(2026, 2), month_start_us(2026, 3)
    ensure_partitions(index_engine, now_us=month_start_us(2026, 6), since_us=jan)
    for start in (jan, feb, mar):
        world.record_hours("cam-a", start + DAY_US, 6, per_segment=6)
    world.holds.place("cam-a", feb + DAY_US, feb + DAY_US + HOUR_US, "case 2026-31", "investigator")
    world.clock.now = month_start_us(2026, 4) + 5 * DAY_US  # March ended 5 days ago: its month stays
    world.cleaner(index_only=True).run_once()
    with index_engine.connect() as conn:
        names = [p.name for p in partitions(conn)]
    assert "segments_p202601" not in names and {"segments_p202602", "segments_p202603"} <= set(names)
    # February is held; March's rows went one by one (age), its partition stays.
    assert [s.start_us for s in world.index.segments("cam-a")] == [feb + DAY_US]
    gaps = [(g.start_us, g.end_us) for g in world.index.gaps("cam-a") if g.reason == "retention"]
    assert gaps == [(mar + DAY_US, mar + DAY_US + 6 * HOUR_US)]
    with index_engine.connect() as conn:
        gap_months = [p.name for p in partitions(conn, "gaps")]
    assert "gaps_p202601" not in gap_months and {"gaps_p202602", "gaps_p202603"} <= set(gap_months)
    assert {"segments_p202607", "gaps_p202607"} <= set(names + gap_months)  # created ahead of the (injected) clock


def test_months_of_gaps_are_dropped_past_retention_unless_open_or_held(index_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL: a month of gaps goes when every gap in it ended before the longest
    retention (plus a day) and no hold overlaps it; with or without index_only (gaps have no
    objects). A gap lives in the month it started in: one still open keeps its month, and
    one opened at a month's end and closed in the next keeps the first."""
    if index_engine.dialect.name != "postgresql":
        pytest.skip("gaps are partitioned on PostgreSQL only")
    from storage.db.partitions import ensure_partitions, month_start_us, partitions

    world = World(index_engine, tmp_path)
    world.registry.add_camera(_camera("cam-a", days=30))
    world.registry.add_camera(_camera("cam-b", days=40))  # the longest retention decides
    jan, feb, mar, apr, may = (month_start_us(2026, m) for m in (1, 2, 3, 4, 5))
    ensure_partitions(index_engine, now_us=month_start_us(2026, 7), since_us=jan)
    idx = world.index
    idx.add_gap("cam-a", "main", jan + DAY_US, jan + 2 * DAY_US, "network")
    across = idx.open_gap("cam-a", "main", feb - HOUR_US, "offline")  # opened on 31 January ...
    idx.close_gap(across, feb + HOUR_US)  # ... closed on 1 February: it lives in January
    still_open = idx.open_gap("cam-b", "main", feb + 9 * DAY_US, "offline")
    idx.add_gap("cam-b", "sub", mar + DAY_US, mar + 2 * DAY_US, "network")
    hold = world.holds.place("cam-b", mar + 20 * DAY_US, apr + DAY_US, "case 2026-40", "investigator")
    idx.add_gap("cam-a", "main", apr + DAY_US, apr + 2 * DAY_US, "network")

    def months() -> set[str]:
        with index_engine.connect() as conn:
            return {p.name for p in partitions(conn, "gaps")}

    world.clock.now = may + 25 * DAY_US  # cutoff: 41 days back, 14 April (April itself is not over it)
    report = world.cleaner().run_once()
    assert report.dropped_partitions == ["gaps_p202601"]
    assert {"gaps_p202602", "gaps_p202603", "gaps_p202604"} <= months()
    assert [g.ref for g in idx.gaps("cam-b")] == [still_open]
    # The camera came back; the hold is released: February and March go, April stays (young).
    idx.close_gap(still_open, mar - DAY_US)
    world.holds.release(hold.id, "investigator")
    world.cleaner().run_once()
    assert "gaps_p202604" in months() and not {"gaps_p202602", "gaps_p202603"} & months()
    assert [(g.start_us, g.end_us) for g in idx.gaps("cam-a")] == [(apr + DAY_US, apr + 2 * DAY_US)]


def test_a_busy_gaps_table_leaves_its_month_for_the_next_run(index_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL: when another transaction holds gaps, the DETACH gives up after its lock
    timeout; the month stays, the rest of the run (age) still happens, the next run drops it."""
    if index_engine.dialect.name != "postgresql":
        pytest.skip("gaps are partitioned on PostgreSQL only")
    from sqlalchemy import text

    from storage.db.partitions import ensure_partitions, month_start_us, partitions

    world = World(index_engine, tmp_path)
    world.registry.add_camera(_camera("cam-a", days=30))
    jan = month_start_us(2026, 1)
    ensure_partitions(index_engine, now_us=month_start_us(2026, 4), since_us=jan)
    world.index.add_gap("cam-a", "main", jan + DAY_US, jan + 2 * DAY_US, "network")
    world.record_hours("cam-a", month_start_us(2026, 2), 6, per_segment=6)
    world.clock.now = month_start_us(2026, 4)
    with index_engine.connect() as other, other.begin():
        other.execute(text("LOCK TABLE gaps IN ROW EXCLUSIVE MODE"))  # a writer's lock, held
        report = world.cleaner().run_once()
    assert report.dropped_partitions == [] and report.by_rule == {"age": 1}
    with index_engine.connect() as conn:
        assert "gaps_p202601" in {p.name for p in partitions(conn, "gaps")}
    # February too: its one gap is the retention gap the age rule wrote, past the cutoff as well.
    assert world.cleaner().run_once().dropped_partitions == ["gaps_p202601", "gaps_p202602"]
