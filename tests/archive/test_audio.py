"""A clip of a camera with AAC audio: the audio track keeps sync and starts at ``start``."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest

from ingest.recording.segmenter import Segmenter
from ingest.recording.spool import Spool
from ingest.recording.uploader import Uploader
from storage.archive.clips import plan_clip
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex
from storage.objects.local import LocalObjectStore
from tests.archive.recorded import T0
from tests.support.packets import encode


def test_audio_track_is_cut_at_start_and_end(tmp_path: Path) -> None:
    enc = encode(seconds=6.0, gop=25, audio=True, size=(320, 180))
    index = SegmentIndex(open_engine(f"sqlite:///{tmp_path / 'i.db'}"))
    store = LocalObjectStore(tmp_path / "objects")
    spool = Spool(tmp_path / "spool", 1 << 30)
    now = [T0]
    seg = Segmenter("cam-a", "main", spool, target_us=2_000_000, clock=lambda: now[0], on_closed=lambda e: None)
    seg.start_input(enc.video, enc.audio)
    v0 = enc.video_packets[0].pts
    timed = [(float((p.pts - v0) * p.time_base), 0, p) for p in enc.video_packets]
    timed += [(float(p.pts * p.time_base), 1, p) for p in enc.audio_packets]
    for t, kind, p in sorted(timed, key=lambda x: (x[0], x[1])):
        now[0] = T0 + int(t * 1e6)
        if kind == 0:
            seg.push_video(p, now[0])
        else:
            seg.push_audio(p)
    seg.end_run()
    Uploader(spool, store, index).drain_once()
    assert index.segments("cam-a", "main")[0].audio_codec == "aac"

    start, end = T0 + 1_530_000, T0 + 4_250_000
    plan = plan_clip(index, "cam-a", "main", start, end, store=store)
    data = b"".join(plan.iter_bytes(store))
    with av.open(io.BytesIO(data)) as c:
        assert float(c.duration / 1e6) == pytest.approx((end - start) / 1e6, abs=0.04)
        audio = [(float(f.time), f.samples) for f in c.decode(audio=0)]
    with av.open(io.BytesIO(data)) as c:
        video = [float(f.time) for f in c.decode(video=0)]
    aac_frame = 1024 / 48000
    assert 0 <= audio[0][0] < aac_frame + 0.001, "audio before start is left out, none starts before 0"
    assert audio[-1][0] < (end - start) / 1e6 <= audio[-1][0] + aac_frame + 0.04
    assert video[-1] < (end - start) / 1e6 and video[-1] + 0.04 >= (end - start) / 1e6 - 0.001
    # In sync: audio time t is wall time start + t, as video's is.
    first_video_shown = next(t for t in video if t >= -1e-3)
    assert abs(first_video_shown) < 0.001
    index.engine.dispose()
