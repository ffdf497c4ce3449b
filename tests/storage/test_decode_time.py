"""SPS reorder depth and derived decode times, checked against independent references:
FFmpeg's ``trace_headers`` bitstream filter reads the same SPS fields, and the encoder's
own DTS (libx264/libx265 muxed into MP4 by the ffmpeg CLI) is what the derivation must
reproduce from the PTS alone."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import av
import pytest

from storage.mp4.decode_time import DecodeTimes, breaks_run, reorder_depth
from storage.mp4.nal import split_annexb
from storage.mp4.sps import parse_sps

ENCODERS = {
    # name: (codec, ffmpeg video args)
    "h264_bf3": ("h264", ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "25"]),
    "h264_bf3_nopyramid": ("h264", ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "25",
                                    "-x264-params", "b-pyramid=none"]),
    "h264_bf0": ("h264", ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "0", "-g", "25"]),
    "h264_baseline": ("h264", ["-c:v", "libx264", "-profile:v", "baseline", "-g", "25"]),
    "h264_high_cropped": ("h264", ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "25",
                                   "-vf", "scale=642:362"]),
    "h265_bf3": ("h265", ["-c:v", "libx265", "-x265-params", "bframes=3:keyint=25:log-level=error:pools=1"]),
    "h265_bf0": ("h265", ["-c:v", "libx265", "-x265-params", "bframes=0:keyint=25:log-level=error:pools=1"]),
}


def _encode(tmp: Path, name: str, ext: str, seconds: float = 3) -> Path:
    codec, args = ENCODERS[name]
    out = tmp / f"{name}.{ext}"
    if not out.exists():
        subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                        "-i", "testsrc2=size=640x360:rate=25", "-t", str(seconds), "-pix_fmt", "yuv420p",
                        *args, *(["-f", "hevc" if codec == "h265" else "h264"] if ext == "es" else []),
                        str(out)], check=True)
    return out


def _trace(path: Path) -> dict[str, int]:
    """First value of each SPS field as FFmpeg's trace_headers prints it."""
    err = subprocess.run(["ffmpeg", "-hide_banner", "-i", str(path), "-c", "copy", "-bsf:v", "trace_headers",
                          "-frames:v", "1", "-f", "null", "-"], capture_output=True, text=True).stderr
    fields: dict[str, int] = {}
    for m in re.finditer(r"\]\s+\d+\s+(\w+(?:\[\d+\])?)\s+[01]+ = (-?\d+)", err):
        fields.setdefault(m.group(1), int(m.group(2)))
    return fields


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("decode_time")


def _sps(codec: str, path: Path):
    nals = split_annexb(path.read_bytes()[:200_000])
    want = 7 if codec == "h264" else 33
    nal = next(n for n in nals if (n[0] & 0x1F if codec == "h264" else (n[0] >> 1) & 0x3F) == want)
    return parse_sps(codec, nal)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_sps_fields_match_ffmpeg_trace_headers(media, name):
    codec, _ = ENCODERS[name]
    es = _encode(media, name, "es")
    info = _sps(codec, es)
    ref = _trace(es)
    assert (info.width, info.height) == ((642, 362) if "cropped" in name else (640, 360))
    if codec == "h264":
        assert info.profile_idc == ref["profile_idc"]
        assert info.level_idc == ref["level_idc"]
        if "bitstream_restriction_flag" in ref and ref["bitstream_restriction_flag"]:
            assert info.reorder_depth == ref["max_num_reorder_frames"]
            assert info.max_dec_frame_buffering == ref["max_dec_frame_buffering"]
        else:
            assert info.reorder_depth == (0 if ref["profile_idc"] == 66 else None)
    else:
        assert info.profile_idc == ref["general_profile_idc"]
        assert info.level_idc == ref["general_level_idc"]
        assert info.reorder_depth == ref["sps_max_num_reorder_pics[0]"]
    assert (info.reorder_depth or 0) > 0 if "bf3" in name else info.reorder_depth == 0 or "bf0" not in name


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_derived_dts_reproduces_the_encoders(media, name):
    """From the PTS alone (in decode order), the encoder's own DTS comes back, frame for frame."""
    codec, _ = ENCODERS[name]
    mp4 = _encode(media, name, "mp4")
    info = _sps(codec, _encode(media, name, "es"))
    with av.open(str(mp4)) as c:
        stream = c.streams.video[0]
        tick = round(1 / (stream.average_rate * stream.time_base))
        packets = [(p.pts, p.dts) for p in c.demux(stream) if p.pts is not None]
    derive = DecodeTimes(reorder_depth(info), tick)
    derived = [derive.push(pts) for pts, _ in packets]
    assert derive.late == 0 and derive.restarts == 0
    assert all(dts <= pts for dts, pts in derived)
    assert all(b[0] > a[0] for a, b in zip(derived, derived[1:]))
    assert [pts for _, pts in derived] == [pts for pts, _ in packets]
    # The encoder's DTS up to one constant: the MP4 muxer may start it at 0 or below.
    shift = packets[0][1] - derived[0][0]
    assert [dts + shift for dts, _ in derived] == [dts for _, dts in packets]
    reordered = sum(1 for (a, _), (b, _) in zip(packets, packets[1:]) if b < a)
    assert (reordered > 0) == ("bf3" in name or "cropped" in name)


def test_too_shallow_a_depth_grows_and_keeps_every_frame():
    """A camera that reorders deeper than it declares: no frame is dropped, DTS stays
    monotonic and below PTS, the depth grows, and once it has grown every PTS is kept."""
    frames = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8]  # I P B B: one level of reordering
    frames += [12, 16, 14, 13, 15, 20, 18, 17, 19]  # then a b-pyramid: two levels
    frames += [g + f for g in range(24, 240, 8) for f in (0, 4, 2, 1, 3)]  # and so on
    pts = [f * 3600 for f in frames]
    derive = DecodeTimes(depth=0, frame_ticks=3600)
    out = [derive.push(p) for p in pts]
    assert len(out) == len(pts)
    assert all(d <= p for d, p in out)
    assert all(b[0] > a[0] for a, b in zip(out, out[1:]))
    assert derive.depth >= 2 and 0 < derive.late <= 6
    assert [p for _, p in out[19:]] == pts[19:]
    assert not any(breaks_run(a[0], b[0], 5 * 90_000) for a, b in zip(out, out[1:]))


def test_a_backward_jump_past_the_window_restarts_and_is_a_break():
    derive = DecodeTimes(depth=2, frame_ticks=3600)
    before = [derive.push(p) for p in (900_000, 914_400, 907_200, 903_600, 910_800)]
    after = derive.push(3600)  # the camera restarted its clock
    assert derive.restarts == 1
    assert breaks_run(before[-1][0], after[0], 5 * 90_000)
    assert after[0] <= after[1] == 3600
    # and a B-frame's small step back is not a break
    assert not any(breaks_run(a[0], b[0], 5 * 90_000) for a, b in zip(before, before[1:]))
