"""A `sharpeyes ingest` worker recording only native cameras never loads the media stack.

PyAV, OpenCV, NumPy and aiortc are imported where they are used (a PyAV pull, motion, a
transcode profile, a picture, a WebRTC offer), not with the worker's modules: a worker
that only records native cameras stays small (docs/native-ingest.md, RSS). Checked on a
real worker process recording a real camera, by the shared libraries it has mapped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from config.cameras import Camera, Region
from tests.faults.harness import IngestProcess, wait_for
from tests.support.cameras import Mount

# What each package maps into the process once imported.
MEDIA_LIBRARIES = {"av": "libavcodec", "cv2": "cv2", "numpy": "numpy", "aiortc": "aiortc"}


def test_a_native_recording_worker_maps_none_of_the_media_stack(tmp_path: Path, camera_server) -> None:  # type: ignore[no-untyped-def]
    server = camera_server({"/n": Mount("h264", size=(320, 240), label="n")})
    proc = IngestProcess(tmp_path, snapshots="false", motion="false", segment_target_seconds=2)
    proc.svc.registry.add_region(Region(code="county", name="County"))
    proc.svc.registry.add_camera(Camera(id="cam-n", name="cam-n", region="county", main_url=server.url("/n")))
    proc.start()
    try:
        wait_for(lambda: len(proc.svc.index.segments("cam-n")) >= 1, 60, "a segment from the native puller")
        assert proc.proc is not None
        maps = Path(f"/proc/{proc.proc.pid}/maps").read_text()
    finally:
        proc.stop()
    loaded = {pkg for pkg, lib in MEDIA_LIBRARIES.items() if lib in maps}
    assert loaded == set(), f"the worker loaded {sorted(loaded)} without a camera that needs them"


def test_the_worker_modules_import_without_the_media_stack() -> None:
    # The modules `sharpeyes ingest` imports to record native cameras and serve their live
    # feeds; each media package must come only with the code that uses it.
    code = (
        "import sys\n"
        "import sharpeyes.cli.main, sharpeyes.process, ingest.supervisor, ingest.media.pipelines\n"
        "import ingest.recording.native_session, streams.app, streams.live.restream, streams.live.webrtc\n"
        f"print(sorted(m for m in {sorted(MEDIA_LIBRARIES)!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
