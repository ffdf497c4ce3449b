"""pytest plugin: a camera that sends B-frames, served by VLC's RTSP server (an independent peer).

Debian's GStreamer RTSP server drops reordered frames, so the B-frame camera is VLC
(``vlc-bin`` + ``vlc-plugin-base``). It serves RTP over **UDP only** (it answers 461 to TCP
interleaved) and refuses to run as root, so as root it is started as user ``nobody``.
VLC ends the stream (RTCP BYE) when its input ends, even with ``--loop``; so the clip is
looped by the ffmpeg CLI (``-stream_loop -1 -re -c copy``, which keeps timestamps
continuous) into VLC's stdin as MPEG-TS. The camera therefore runs until stopped, and its
frames carry the burned-in frame code of ``tests.support.clips`` (the index in the loop).

Fixtures
--------
``vlc_camera`` (session scope) -- a factory::

    cam = vlc_camera(size=(640, 360), label="bf", gop_seconds=1)   # started
    cam.url                 # 'rtsp://127.0.0.1:PORT/bframes'
    cam.clip                # the tests.support.clips.Clip it loops (kind "h264_bframes")
    cam.stop(); cam.start() # kill; start again on the same port (frame codes restart at 0)

``bframes_camera`` (session scope) -- one running ``VlcCamera``: 640x360, 25 fps, GOP 25,
3 B-frames (reorder depth 2), a 24 s loop.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.cameras import HOST, free_port
from tests.support.clips import Clip, make_clip

CVLC = shutil.which("cvlc") or "/usr/bin/cvlc"


class VlcCamera:
    """One VLC RTSP server looping one clip on ``rtsp://127.0.0.1:PORT/NAME``."""

    def __init__(self, clip: Clip, workdir: Path, port: int | None = None, name: str = "bframes"):
        self.clip = clip
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.name = name
        self.log_file = self.workdir / "vlc.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://{HOST}:{self.port}/{self.name}"

    def _command(self) -> list[str]:
        vlc = [CVLC, "--no-audio", "-", "--sout", f"#rtp{{sdp=rtsp://{HOST}:{self.port}/{self.name}}}",
               "--sout-keep", "--rtsp-host", HOST]
        if os.geteuid() == 0:
            vlc = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *vlc]
        feed = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                "-i", str(self.clip.video), "-c", "copy", "-f", "mpegts", "-"]
        return ["bash", "-c", f"{shlex.join(feed)} | exec {shlex.join(vlc)}"]

    def start(self, timeout: float = 20.0) -> "VlcCamera":
        if self.running:
            return self
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        home.chmod(0o777)  # VLC (as nobody) writes its config there
        env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home), XDG_CACHE_HOME=str(home))
        with open(self.log_file, "ab") as log:
            # A session of its own, so stop() ends ffmpeg and VLC together.
            self.proc = subprocess.Popen(self._command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"VLC camera exited: {self.log_file.read_text(errors='replace')[-2000:]}")
            # VLC answers OPTIONS at once but DESCRIBE with 5xx until its input is demuxed.
            if self.describes_video():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"VLC camera not ready in {timeout}s: {self.log_file.read_text(errors='replace')[-2000:]}")

    def describes_video(self, timeout: float = 1.0) -> bool:
        """True once the server answers DESCRIBE with an SDP that has a video track."""
        request = f"DESCRIBE {self.url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
        try:
            with socket.create_connection((HOST, self.port), timeout=timeout) as s:
                s.sendall(request.encode())
                answer = b""
                while b"m=video" not in answer and len(answer) < 65536:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    answer += chunk
        except OSError:
            return False
        return answer.startswith(b"RTSP/1.0 200") and b"m=video" in answer

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="session")
def vlc_camera():
    if not os.path.exists(CVLC):
        pytest.skip("VLC (cvlc) is not installed: apt-get install vlc-bin vlc-plugin-base")
    cameras: list[VlcCamera] = []

    def factory(size: tuple[int, int] = (640, 360), label: str = "bframes", fps: int = 25,
                seconds: int = 24, gop_seconds: int = 1, name: str = "bframes", start: bool = True) -> VlcCamera:
        clip = make_clip("h264_bframes", size=size, fps=fps, seconds=seconds, gop_seconds=gop_seconds, label=label)
        cam = VlcCamera(clip, Path(tempfile.mkdtemp(prefix="vlc-camera-")), name=name)
        cameras.append(cam)
        return cam.start() if start else cam

    yield factory
    for cam in cameras:
        cam.stop()
        shutil.rmtree(cam.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def bframes_camera(vlc_camera) -> VlcCamera:
    return vlc_camera()
