"""Gap bookkeeping of ``CameraSession`` when media time runs ahead of the wall clock."""

from __future__ import annotations

from pathlib import Path

from config.cameras import Camera
from ingest.recording.segmenter import Segmenter
from ingest.recording.session import CameraSession, SessionFailure
from ingest.recording.spool import Spool
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex

T0 = 1_800_000_000_000_000


def test_one_outage_is_one_gap_with_the_latest_cause(tmp_path: Path) -> None:
    """The stream drops (network), then reconnects are refused (offline): one gap row."""
    index = SegmentIndex(open_engine(f"sqlite:///{tmp_path}/i.db"))
    clock = {"now": T0}
    seg = Segmenter("cam-1", "main", Spool(tmp_path / "spool", 1 << 30), target_us=2_000_000,
                    clock=lambda: clock["now"], on_closed=lambda e: None, last_end_us=T0 + 90_000)
    cam = Camera(id="cam-1", name="c", region="r", main_url="rtsp://127.0.0.1/x")
    session = CameraSession(cam, "main", seg, index, clock=lambda: clock["now"])
    session._fail(SessionFailure("offline", "network", "stalled"))
    clock["now"] += 2_000_000
    session._fail(SessionFailure("offline", "offline", "refused"))
    gaps = index.gaps("cam-1")
    assert [(g.start_us, g.end_us, g.reason) for g in gaps] == [(T0 + 90_000, None, "offline")]
    session._close_gap(T0 + 5_000_000)
    assert [(g.start_us, g.end_us) for g in index.gaps("cam-1")] == [(T0 + 90_000, T0 + 5_000_000)]


def test_a_camera_fault_after_a_restart_gap_never_ends_it_before_its_start(tmp_path: Path) -> None:
    """The last segment ended (by media time) 90 ms after "now": the restart gap starts there.
    The camera then fails: the restart gap ends and an outage gap begins, never before the
    restart gap's start (a ValueError there once killed the session's thread for good)."""
    index = SegmentIndex(open_engine(f"sqlite:///{tmp_path}/i.db"))
    clock = {"now": T0}
    seg = Segmenter("cam-1", "main", Spool(tmp_path / "spool", 1 << 30), target_us=2_000_000,
                    clock=lambda: clock["now"], on_closed=lambda e: None, last_end_us=T0 + 90_000)
    cam = Camera(id="cam-1", name="c", region="r", main_url="rtsp://127.0.0.1/x")
    session = CameraSession(cam, "main", seg, index, clock=lambda: clock["now"],
                            initial_gap=(T0 + 90_000, "worker_restart"))
    session._fail(SessionFailure("offline", "offline", "refused"))
    gaps = index.gaps("cam-1")
    assert [(g.start_us, g.end_us, g.reason) for g in gaps] == [
        (T0 + 90_000, T0 + 90_000, "worker_restart"), (T0 + 90_000, None, "offline")]
    session._close_gap(T0 + 50_000)  # recording resumed on a new anchor slightly behind: still not before the start
    assert index.gaps("cam-1")[-1].end_us == T0 + 90_000


def test_gaps_left_open_by_a_dead_process_are_closed_and_adopted_by_ref(tmp_path: Path, database_url: str) -> None:
    """Two gaps a dead process left open, the older opened in January and the newer in
    February (on PostgreSQL: two partitions): the older ends where the newer began, the new
    session adopts the newer and closes it when recording resumes, never before its start."""
    from config.cameras import Region
    from config.settings import Settings
    from ingest.supervisor import Supervisor
    from sharpeyes.services import Services
    from storage.db.partitions import ensure_partitions, month_start_us

    jan, feb = month_start_us(2026, 1), month_start_us(2026, 2)
    svc = Services(Settings(data_dir=tmp_path, database_url=database_url))
    ensure_partitions(svc.engine, now_us=feb, since_us=jan)
    svc.registry.add_region(Region(code="r", name="R"))
    cam = Camera(id="cam-1", name="c", region="r", main_url="rtsp://127.0.0.1:9/none")
    svc.registry.add_camera(cam)
    older = svc.index.open_gap("cam-1", "main", feb - 60_000_000, "network")
    newer = svc.index.open_gap("cam-1", "main", feb + 60_000_000, "offline")
    made: list[CameraSession] = []

    def factory(camera, stream, segmenter, index, **options):  # type: ignore[no-untyped-def]
        made.append(CameraSession(camera, stream, segmenter, index, **options))
        return made[-1]

    sup = Supervisor(svc.settings, svc.registry, svc.index, svc.store, session_factory=factory)
    try:
        sup._new_session(cam, "main")
        assert [(g.ref, g.end_us) for g in svc.index.gaps("cam-1")] == [(older, newer.start_us), (newer, None)]
        made[0]._close_gap(feb)  # a segment stamped before the adopted gap's start (clock skew)
        assert [(g.ref, g.end_us) for g in svc.index.gaps("cam-1")][-1] == (newer, newer.start_us)
    finally:
        sup.close()
        svc.engine.dispose()
