"""Media routes, mask validation and profile checks at registration."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from config.motion import MotionMask, MotionSettings
from ingest.media.jpeg import picture
from ingest.media.snapshots import SnapshotStore
from ingest.media.transcode import TranscodeError, check_profile
from config.cameras import Camera
from config.settings import Settings
from storage.index.media import MediaIndex, Picture, merge_spans
from tests.auth.conftest import PASSWORD, world  # noqa: F401 - the fixture
from tests.media.synthetic import scene

T0 = 1_800_000_000  # seconds


@pytest.mark.parametrize("points, reason", [
    ([(0, 0), (1.2, 0), (1, 1)], "outside the frame"),
    ([(0, 0), (1, 1), (1, 0), (0, 1)], "self-intersecting"),
    ([(0, 0), (0.5, 0.5), (0, 0)], "repeats a point"),
])
def test_bad_masks_are_refused_with_the_reason(points, reason):
    with pytest.raises(ValueError, match=reason):
        MotionMask(points=points)


def test_pixel_masks_are_normalized_and_checked_against_their_reference_size():
    mask = MotionMask(points=[(0, 0), (640, 0), (640, 360)], ref_width=640, ref_height=360)
    assert mask.points == [(0, 0), (1, 0), (1, 1)]
    with pytest.raises(ValueError, match="outside the frame"):
        MotionMask(points=[(0, 0), (641, 0), (640, 360)], ref_width=640, ref_height=360)


def test_an_encoder_that_fails_to_open_is_a_registration_error(world):  # noqa: F811
    settings = Settings(data_dir=world.data_dir, transcode_encoder="h264_nvenc")
    cam = Camera(id="cam-x", name="x", region="v1", main_url="rtsp://10.0.0.9/main", transcode="live-h264")
    with pytest.raises(TranscodeError, match="camera cam-x.*h264_nvenc does not open"):
        check_profile(cam, settings)
    assert check_profile(cam.model_copy(update={"transcode": "none"}), settings) is None
    # Through the API: refused with the reason, nothing registered.
    world.app.state.ctx.settings = settings
    r = world.client.post("/api/cameras", headers=world.headers("operator"),
                          json={"id": "cam-x", "name": "x", "region": "v1", "main_url": "rtsp://10.0.0.9/main",
                                "transcode": "live-h264"})
    assert r.status_code == 422 and "h264_nvenc does not open" in r.json()["detail"]
    assert world.registry.camera("cam-x") is None
    r = world.client.post("/api/cameras", headers=world.headers("operator"),
                          json={"id": "cam-y", "name": "y", "region": "v1", "main_url": "rtsp://10.0.0.9/main",
                                "transcode": "fast"})
    assert r.status_code == 422 and "transcode" in r.json()["detail"]


def test_latest_jpeg_thumbnails_and_motion_routes(world):  # noqa: F811
    ctx = world.app.state.ctx
    h = world.headers("investigator")
    r = world.client.get("/api/cameras/cam-in/latest.jpg", headers=h)
    assert r.status_code == 503 and "no ingest" in r.json()["detail"]

    class Pipelines:
        snapshots = SnapshotStore()

    ctx.media = Pipelines()
    r = world.client.get("/api/cameras/cam-in/latest.jpg", headers=h)
    assert r.status_code == 503 and "no picture yet" in r.json()["detail"]
    Pipelines.snapshots.put(picture(scene(640, 360), "cam-in", "main", T0 * 10**6))
    r = world.client.get("/api/cameras/cam-in/latest.jpg?width=320", headers=h)
    import cv2
    import numpy as np
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (180, 320, 3)
    assert world.client.get("/api/cameras/cam-out/latest.jpg", headers=h).status_code == 404

    media = MediaIndex(world.engine)
    media.add_thumbnail(Picture("cam-in", "main", T0 * 10**6, 160, 90, b"\xff\xd8jpeg"))
    r = world.client.get(f"/api/cameras/cam-in/thumbnails?start={T0 * 1000}&end={(T0 + 60) * 1000}", headers=h)
    assert [t["t_us"] for t in r.json()] == [T0 * 10**6]
    r = world.client.get(f"/api/cameras/cam-in/thumbnails/{T0 * 10**6 + 5}.jpg", headers=h)
    assert r.content == b"\xff\xd8jpeg"
    r = world.client.get(f"/api/cameras/cam-in/thumbnails/{(T0 + 3600) * 10**6}.jpg", headers=h)
    assert r.status_code == 204 and "no thumbnail" in r.headers["X-Reason"]

    media.add_motion("cam-in", "main", [(T0 + 1, 10), (T0 + 2, 200), (T0 + 3, 5), (T0 + 9, 30), (T0 + 61, 7)])
    r = world.client.get(f"/api/cameras/cam-in/motion?start={T0 * 1000}&end={(T0 + 120) * 1000}", headers=h)
    assert [(s["start_us"] // 10**6 - T0, s["end_us"] // 10**6 - T0, s["peak"]) for s in r.json()] == \
        [(1, 4, 200), (9, 10, 30), (61, 62, 7)]
    r = world.client.get(f"/api/cameras/cam-in/motion?start={T0 * 1000}&end={(T0 + 120) * 1000}&min_level=20",
                         headers=h)
    assert len(r.json()) == 2
    r = world.client.get(f"/api/motion?region=t1&start={T0 * 1000}&end={(T0 + 120) * 1000}", headers=h)
    assert {s["camera_id"] for s in r.json()} == {"cam-in"}
    assert world.client.get(f"/api/cameras/cam-in/motion?start={T0}&end=0", headers=h).status_code == 422


def test_motion_settings_route_refuses_bad_polygons(world):  # noqa: F811
    h = world.headers("operator")
    r = world.client.put("/api/cameras/cam-in/motion-settings", headers=h,
                         json={"masks": [{"points": [[0, 0], [1, 1], [1, 0], [0, 1]]}], "sensitivity": 70})
    assert r.status_code == 422 and "self-intersecting" in r.json()["detail"]
    ok = {"masks": [{"points": [[0, 0], [0.5, 0], [0.5, 0.5]]}], "sensitivity": 70}
    assert world.client.put("/api/cameras/cam-in/motion-settings", headers=h, json=ok).status_code == 200
    assert MediaIndex(world.engine).motion_settings("cam-in") == MotionSettings.model_validate(ok)


def test_merge_spans_joins_adjacent_seconds_only():
    spans = merge_spans("c", [(1, 3), (2, 9), (4, 1), (5, 0)], min_level=1)
    assert [(s.start_s, s.end_s, s.peak) for s in spans] == [(1, 3, 9), (4, 5, 1)]


def test_cli_motion_lists_spans(tmp_path, monkeypatch):
    from sharpeyes.cli.main import app
    from storage.db.engine import open_engine

    monkeypatch.setenv("SHARPEYES_DATA_DIR", str(tmp_path))
    engine = open_engine(f"sqlite:///{tmp_path / 'index.db'}")
    from config.cameras import Region
    from storage.index.registry import Registry
    from storage.index.credentials import load_cipher
    reg = Registry(engine, load_cipher(tmp_path))
    reg.add_region(Region(code="r", name="R"))
    reg.add_camera(Camera(id="cam-m", name="m", region="r", main_url="rtsp://10.0.0.1/x"))
    MediaIndex(engine).add_motion("cam-m", "main", [(T0 + 5, 40), (T0 + 6, 40)])
    result = CliRunner().invoke(app, ["motion", "cam-m", "--from", str(T0 * 1000), "--to", str((T0 + 60) * 1000)])
    assert result.exit_code == 0, result.output
    assert "1 span(s)" in result.output and "2" in result.output
