"""Snapshots, thumbnails and transcode profiles on real GStreamer cameras through a real Supervisor."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from tests.media.conftest import wait_for
from tests.support.cameras import Mount

SIZE = (640, 360)


@pytest.fixture(scope="module")
def cams(camera_server):
    server = camera_server({"/h264": Mount("h264", size=SIZE, seconds=12),
                            "/h265": Mount("h265", size=SIZE, seconds=12)})
    yield server


def test_latest_snapshot_and_thumbnails(media_rig, cams):
    rig = media_rig(motion=False, thumbnail_interval_seconds=2)
    rig.add("snapcam", cams.url("/h264"))
    snap = wait_for(lambda: rig.pipelines.snapshots.latest("snapcam"), what="a snapshot")
    image = cv2.imdecode(np.frombuffer(snap.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (SIZE[1], SIZE[0])
    thumbs = wait_for(lambda: (t := rig.media.thumbnail_times("snapcam", 0, 2**62)) and len(t) >= 2 and t,
                      what="two thumbnails")
    buckets = [t_us // 2_000_000 for _, t_us, _, _ in thumbs]
    assert len(buckets) == len(set(buckets))  # at most one per interval
    assert {(w, h) for _, _, w, h in thumbs} == {(160, 90)}


def test_sub_profile_records_a_640x360_stream_lined_up_with_main(media_rig, cams):
    rig = media_rig(motion=False, snapshots=False, sub_width=320, sub_height=180)
    rig.add("subcam", cams.url("/h264"), transcode="sub")
    wait_for(lambda: len(rig.index.segments("subcam", "sub", 0, 2**62)) >= 2, timeout=40, what="sub segments")
    main = rig.index.segments("subcam", "main", 0, 2**62)
    sub = rig.index.segments("subcam", "sub", 0, 2**62)
    assert {(s.width, s.height, s.codec) for s in sub} == {(320, 180, "h264")}
    status = rig.supervisor.session("subcam").status
    assert (status.transcode, status.encoder) == ("sub", "libx264")
    main_starts = [m.start_us for m in main]
    for seg in sub:
        # Cut at the same source keyframes and timed from the same arrivals.
        assert min(abs(seg.start_us - t) for t in main_starts) < 100_000, (seg.start_us, main_starts)


def test_live_h264_turns_h265_into_decodable_h264(media_rig, cams):
    rig = media_rig(motion=False, snapshots=False, live_height=180)
    rig.add("hevccam", cams.url("/h265"), transcode="live-h264")
    transcoder = wait_for(lambda: rig.pipelines.live_transcoder("hevccam"), what="the transcoder")
    got: list[av.Packet] = []
    transcoder.outputs.append(got.append)
    wait_for(lambda: sum(p.is_keyframe for p in got) >= 2, what="two H.264 keyframes")
    assert got[0].stream.codec_context.name == "libx264" or got[0].stream.codec_context.name == "h264"
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in got for f in decoder.decode(p)]
    assert frames and (frames[-1].width, frames[-1].height) == (320, 180)
    assert rig.index.segments("hevccam", "main", 0, 2**62) == [] or \
        {s.codec for s in rig.index.segments("hevccam", "main", 0, 2**62)} == {"h265"}
    # Live viewers are served the H.264 (the hub is fed by the transcoder, not the camera).
    hub = rig.supervisor.live.get("hevccam", "main")
    wait_for(lambda: hub.params is not None and hub.access_units > 10, what="H.264 in the live hub")
    assert hub.params.codec == "h264" and (hub.params.width, hub.params.height) == (320, 180)


def test_motion_decodes_the_sub_stream_and_the_main_only_when_asked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from config.cameras import Camera
    from config.settings import Settings
    from ingest.media.pipelines import motion_stream

    with_sub = Camera(id="a", name="a", region="r", main_url="rtsp://h/m", sub_url="rtsp://h/s")
    main_only = Camera(id="b", name="b", region="r", main_url="rtsp://h/m")
    default = Settings(data_dir=tmp_path)
    assert motion_stream(with_sub, default) == "sub"
    assert motion_stream(main_only, default) is None, "decoding every main-stream frame is opt-in"
    assert motion_stream(main_only, Settings(data_dir=tmp_path, motion_on_main=True)) == "main"
    assert motion_stream(with_sub, Settings(data_dir=tmp_path, motion=False)) is None


def test_archive_h264_records_the_h265_camera_as_h264(media_rig, cams):
    rig = media_rig(motion=False, snapshots=False, live_height=180)
    rig.add("archcam", cams.url("/h265"), transcode="archive-h264")
    segs = wait_for(lambda: (s := rig.index.segments("archcam", "main", 0, 2**62)) and len(s) >= 2 and s,
                    timeout=60, what="two re-encoded segments")
    assert {s.codec for s in segs} == {"h264"}, "recorded as H.264, not the camera's H.265"
    for a, b in zip(segs, segs[1:]):
        assert abs(b.start_us - a.end_us) <= 100_000
    data = rig.supervisor.uploader.store.get_range(segs[0].object_key, 0, segs[0].bytes)
    import io

    with av.open(io.BytesIO(data)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) > 10
