"""The GB/T 28181 test device's media source (``tests.support.ps_rtp_sender.ps_command``)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.clips import make_clip
from tests.support.ps_rtp_sender import ps_command


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_a_looped_ps_source_runs_past_the_clip_with_time_going_on(tmp_path: Path, codec: str) -> None:
    # The live GB tests loop a 24 s clip; a loop that silently ended at the clip's end left the
    # recorder with no media on a slow run (coverage 0.57 once). FFmpeg's own PS demuxer
    # (ffprobe) judges the source, not ours.
    clip = make_clip(codec, size=(320, 180), seconds=2, label="loop")
    source = subprocess.Popen(ps_command("ffmpeg", clip.video, loop=True), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert source.stdout is not None
    os.set_blocking(source.stdout.fileno(), False)
    data = bytearray()
    started = time.monotonic()
    try:
        while time.monotonic() - started < 4.0:  # real-time paced (-re): two passes and more
            data += source.stdout.read(1 << 16) or b""
            time.sleep(0.05)
    finally:
        source.kill()
        source.wait()
    assert source.returncode is not None and source.returncode < 0, "the source ended by itself"
    ps = tmp_path / "out.mpg"
    ps.write_bytes(bytes(data))
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=pts_time",
                            "-of", "csv=p=0", str(ps)], capture_output=True, text=True, timeout=60)
    times = [float(t) for t in probe.stdout.split() if t not in ("", "N/A")]
    assert times and max(times) > 3.0, f"the source's time stopped at {max(times, default=0):.2f} s"
