"""Cutting a segment at GOP boundaries for time fencing (``ingest.recording.pieces``), on a real
fMP4 written by ffmpeg with the segmenter's flags."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av

from ingest.recording.pieces import split_by_claims
from storage.index.segments import Claim
from storage.mp4.read import init_segment_size, parse_init, scan_fragments
from tests.support.clips import make_clip

S = 1_000_000
T0 = 1_800_000_000 * S


def segment(tmp_path: Path) -> bytes:
    clip = make_clip("h264", size=(320, 180), seconds=8)  # 4 GOPs of 2 s
    out = tmp_path / "seg.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-r", "25", "-i", str(clip.video), "-c", "copy",
                    "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(out)], check=True)
    return out.read_bytes()


def frames(data: bytes, tmp_path: Path) -> int:
    p = tmp_path / "piece.mp4"
    p.write_bytes(data)
    with av.open(str(p)) as f:
        return sum(1 for _ in f.decode(video=0))


def test_split_keeps_every_frame_and_restarts_media_time(tmp_path: Path) -> None:
    data = segment(tmp_path)
    init_size = init_segment_size(data)
    claim = Claim(T0 + 5 * S, T0 + 20 * S, "taken_over", "b since its takeover")
    pieces = split_by_claims(data, init_size, T0, T0 + 8 * S, [claim])
    # GOPs [0,2) [2,4) are free; [4,6) overlaps the claim from 5 s, so it goes with [6,8).
    assert [(p.start_us - T0, p.end_us - T0, bool(p.claimed)) for p in pieces] == [
        (0, 4 * S, False), (4 * S, 8 * S, True)]
    assert pieces[1].claimed == [claim]
    assert [frames(p.data, tmp_path) for p in pieces] == [100, 100]
    for p in pieces:
        tracks = parse_init(p.data[:init_size])
        frags = scan_fragments(p.data, tracks, init_size)
        first = next(iter(frags[0].runs.values()))
        assert first.samples[0].decode_time == 0  # media time starts at the piece's start
        assert [k.byte_offset for k in p.keyframes] == [f.moof_offset for f in frags]
        assert [k.offset_us for k in p.keyframes] == [0, 2 * S]


def test_no_claim_overlapping_gives_one_free_piece(tmp_path: Path) -> None:
    data = segment(tmp_path)
    (piece,) = split_by_claims(data, init_segment_size(data), T0, T0 + 8 * S, [Claim(0, T0, "indexed", "x")])
    assert data.startswith(piece.data) and not piece.claimed  # all but the mfra ffmpeg appends
