"""Gap bookkeeping of ``CameraSession`` when media time runs ahead of the wall clock."""

from __future__ import annotations

from pathlib import Path

from config.cameras import Camera
from ingest.segmenter import Segmenter
from ingest.session import CameraSession, SessionFailure
from ingest.spool import Spool
from storage.database import open_engine
from storage.index import SegmentIndex

T0 = 1_800_000_000_000_000


def test_a_changed_failure_reason_never_ends_a_gap_before_its_start(tmp_path: Path) -> None:
    """The last segment ended (by media time) 90 ms after "now": the open gap starts there.
    A second failure with another reason used to close it at "now", before its start:
    ValueError escaped and killed the session's thread, so the camera never came back."""
    index = SegmentIndex(open_engine(f"sqlite:///{tmp_path}/i.db"))
    clock = {"now": T0}
    seg = Segmenter("cam-1", "main", Spool(tmp_path / "spool", 1 << 30), target_us=2_000_000,
                    clock=lambda: clock["now"], on_closed=lambda e: None, last_end_us=T0 + 90_000)
    cam = Camera(id="cam-1", name="c", region="r", main_url="rtsp://127.0.0.1/x")
    session = CameraSession(cam, "main", seg, index, clock=lambda: clock["now"])
    session._fail(SessionFailure("offline", "network", "stalled"))
    session._fail(SessionFailure("offline", "offline", "refused"))  # raised ValueError before the fix
    gaps = index.gaps("cam-1")
    assert [(g.start_us, g.end_us, g.reason) for g in gaps] == [
        (T0 + 90_000, T0 + 90_000, "network"), (T0 + 90_000, None, "offline")]
    session._close_gap(T0 + 50_000)  # recording resumed on a new anchor slightly behind: still not before the start
    assert index.gaps("cam-1")[-1].end_us == T0 + 90_000
