"""Motion accuracy at one-second resolution on a clip with known motion."""

from __future__ import annotations

import io

import av

from config.motion import MotionSettings
from ingest.media.motion import MotionAnalyzer
from tests.media.synthetic import motion_clip

T0_US = 1_800_000_000_000_000  # a whole second, so clip second k is wall second T0 + k
MOVING = {3, 4, 5, 11, 17, 18, 19, 20, 21, 30, 31, 38}
SECONDS = 42


def analyse(data: bytes, settings: MotionSettings) -> tuple[dict[int, int], MotionAnalyzer]:
    levels: dict[int, int] = {}
    analyzer = MotionAnalyzer("c1", "main", None, settings, clock=lambda: T0_US, fps=5,
                              on_levels=lambda done: levels.update(done))
    with av.open(io.BytesIO(data)) as src:
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                analyzer.tap(packet)
                analyzer.tap.drain()  # a test must not drop: hand over at the worker's pace
    analyzer.close()
    return {t - T0_US // 1_000_000: v for t, v in levels.items()}, analyzer


def test_recall_and_precision_at_one_second_resolution():
    levels, analyzer = analyse(motion_clip(MOVING, SECONDS), MotionSettings())
    detected = {s for s, v in levels.items() if v > 0}
    true_pos = len(detected & MOVING)
    recall = true_pos / len(MOVING)
    precision = true_pos / max(1, len(detected))
    assert analyzer.tap.dropped == 0
    assert recall >= 0.95, (sorted(detected), sorted(MOVING))
    assert precision >= 0.9, (sorted(detected), sorted(MOVING))


def test_a_mask_over_the_moving_object_hides_its_motion():
    # The square moves in the band y = 1/3 .. 2/3 + box; mask the whole band.
    band = {"points": [(0, 0.3), (1, 0.3), (1, 0.85), (0, 0.85)]}
    levels, _ = analyse(motion_clip({3, 4, 5}, 8), MotionSettings(masks=[band]))
    assert not any(levels.values()), levels
