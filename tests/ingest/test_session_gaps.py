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
