"""The test peers themselves: clips with frame codes, and the GStreamer RTSP cameras."""

import socket
import time

import av
import pytest

from tests.support.cameras import Mount
from tests.support.clips import make_clip, read_frame_code

SMALL = (640, 360)


@pytest.fixture(scope="module")
def cams(camera_server):
    return camera_server({
        "/h264": Mount("h264", size=SMALL, label="h264"),
        "/h265": Mount("h265", size=SMALL, label="h265"),
        "/slices": Mount("h264_slices", size=SMALL, label="slices"),
        "/aac": Mount("h264_aac", size=SMALL, label="aac"),
        "/mjpeg": Mount("mjpeg", size=SMALL, label="mjpeg"),
        "/private": Mount("h264", size=SMALL, label="private", user="admin", password="s3cret"),
    })


@pytest.mark.parametrize("kind", ["h264", "h265", "mjpeg"])
def test_clip_frame_codes_survive_encoding(kind):
    clip = make_clip(kind, size=SMALL)
    with av.open(str(clip.video)) as c:
        codes = [read_frame_code(f.to_ndarray(format="gray")) for f in c.decode(video=0)]
    assert codes == list(range(clip.frames))
    assert clip.frames % clip.gop == 0


def _decode(url, n, transport="tcp"):
    codes, times = [], []
    with av.open(url, options={"rtsp_transport": transport}, timeout=5) as c:
        for f in c.decode(video=0):
            codes.append(read_frame_code(f.to_ndarray(format="gray")))
            times.append(time.monotonic())
            if len(codes) >= n:
                break
    return codes, times


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("path", ["/h264", "/h265"])
def test_frames_advance_by_one_at_25fps(cams, path, transport):
    codes, times = _decode(cams.url(path), 90, transport)
    assert all(b - a == 1 for a, b in zip(codes, codes[1:])), codes
    # steady state (after the start-up burst) runs at real time
    rate = 40 / (times[-1] - times[-41])
    assert 21 < rate < 29, rate


def _slice_nals(data: bytes) -> int:
    n, i = 0, 0
    while (i := data.find(b"\x00\x00\x01", i)) >= 0:
        n += (data[i + 3] & 0x1F) in (1, 5)
        i += 3
    return n


def test_multi_slice_frames(cams):
    """Each frame carries 4 slices. FFmpeg's RTSP demuxer (with its H.264 parser) hands
    them out either as one packet per slice with the same pts, or merged; we check the
    slices per pts either way (observed with PyAV 18: merged, except right at start)."""
    slices_per_pts, packets_per_pts = {}, {}
    with av.open(cams.url("/slices"), options={"rtsp_transport": "tcp"}, timeout=5) as c:
        for i, pkt in enumerate(c.demux(video=0)):
            if pkt.pts is not None:
                slices_per_pts[pkt.pts] = slices_per_pts.get(pkt.pts, 0) + _slice_nals(bytes(pkt))
                packets_per_pts[pkt.pts] = packets_per_pts.get(pkt.pts, 0) + 1
            if i > 100:
                break
    full = list(slices_per_pts.values())[1:-1]
    assert full and all(n == 4 for n in full), slices_per_pts


def test_aac_camera_has_audio(cams):
    with av.open(cams.url("/aac"), options={"rtsp_transport": "tcp"}, timeout=5) as c:
        kinds = sorted(s.type for s in c.streams)
        assert kinds == ["audio", "video"]
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac" and a.rate == 48000
        got = 0
        for pkt in c.demux(audio=0):
            got += pkt.size > 0
            if got >= 10:
                break


def test_mjpeg_camera(cams):
    with av.open(cams.url("/mjpeg"), options={"rtsp_transport": "tcp"}, timeout=5) as c:
        assert c.streams.video[0].codec_context.name == "mjpeg"


def test_auth(cams):
    with pytest.raises(av.error.HTTPUnauthorizedError if hasattr(av.error, "HTTPUnauthorizedError")
                       else av.error.FFmpegError) as e:
        av.open(cams.url("/private"), options={"rtsp_transport": "tcp"}, timeout=5)
    assert "401" in str(e.value) or "nauthorized" in str(e.value)
    with pytest.raises(av.error.FFmpegError):
        av.open(cams.url("/private", "admin", "wrong"), options={"rtsp_transport": "tcp"}, timeout=5)
    codes, _ = _decode(cams.url("/private", "admin", "s3cret"), 5)
    assert len(codes) == 5
    # raw RTSP: DESCRIBE without credentials is challenged
    with socket.create_connection(("127.0.0.1", cams.port), timeout=3) as s:
        s.sendall(f"DESCRIBE {cams.url('/private')} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        reply = s.recv(4096).decode()
    assert reply.startswith("RTSP/1.0 401") and "WWW-Authenticate" in reply


def test_client_count(cams):
    assert cams.client_count("/h264") == 0
    conns = [av.open(cams.url("/h264"), options={"rtsp_transport": "tcp"}, timeout=5) for _ in range(3)]
    try:
        for c in conns:
            next(c.demux(video=0))
        assert cams.client_count("/h264") == 3
        st = cams.status()["/h264"]
        assert st["playing"] == 3
    finally:
        for c in conns:
            c.close()
    deadline = time.monotonic() + 5
    while cams.client_count("/h264") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cams.client_count("/h264") == 0


def test_stop_start_pause(camera_server):
    srv = camera_server({"/c": Mount("h264", size=SMALL, label="c")})
    port = srv.port
    assert len(_decode(srv.url("/c"), 3)[0]) == 3
    srv.stop()
    with pytest.raises(av.error.FFmpegError):
        av.open(srv.url("/c"), options={"rtsp_transport": "tcp"}, timeout=2)
    srv.start()
    assert srv.port == port
    assert len(_decode(srv.url("/c"), 3)[0]) == 3
    # pause: the stream stalls, then continues
    with av.open(srv.url("/c"), options={"rtsp_transport": "tcp"}, timeout=5) as c:
        it = c.demux(video=0)
        next(it)
        srv.pause()
        time.sleep(1.0)
        srv.resume()
        for _ in range(30):
            next(it)


def test_garbage_server(garbage_rtsp_server):
    with pytest.raises(av.error.FFmpegError):
        av.open(garbage_rtsp_server.url, options={"rtsp_transport": "tcp"}, timeout=3)


def test_vlc_camera_sends_b_frames_with_continuous_frame_codes(bframes_camera):
    """VLC keeps the reordered frames: in decode order the pts go back and forth, and the
    decoded pictures run on frame by frame, across the loop seam, over UDP (its only transport)."""
    clip = bframes_camera.clip
    ptss, codes = [], []
    with av.open(bframes_camera.url, options={"rtsp_transport": "udp"}, timeout=5) as c:
        stream = c.streams.video[0]
        for pkt in c.demux(stream):
            if pkt.pts is not None:
                ptss.append(pkt.pts)
            for f in pkt.decode():
                codes.append(read_frame_code(f.to_ndarray(format="gray")))
            if len(codes) >= clip.frames + 50:
                break
    assert sum(1 for a, b in zip(ptss, ptss[1:]) if b < a) > len(ptss) // 3  # B-frames
    assert all((b - a) % clip.frames == 1 for a, b in zip(codes, codes[1:])), codes
    assert any(b < a for a, b in zip(codes, codes[1:]))  # it did loop
