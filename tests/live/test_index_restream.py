"""The stream index, the RTSP restream (ffprobe and PyAV as clients), and viewers across a camera restart."""

from __future__ import annotations

import asyncio
import json
import subprocess

import av
import httpx

from tests.live.conftest import LiveWorld, get
from tests.live.whep_client import close, wait_frames, whep_connect


def test_stream_index_lists_visible_cameras_with_urls_and_state(live: LiveWorld):
    live.wait_online("cam1", "sub")
    rows = get(live, "/api/streams").json()
    by = {(r["camera_id"], r["stream"]): r for r in rows}
    assert set(by) == {("cam1", "main"), ("cam1", "sub"), ("cam265", "main"), ("dead", "main")}
    main = by[("cam1", "main")]
    assert main["online"] and main["status"] == "recording"
    assert (main["codec"], main["width"], main["height"]) == ("h264", 640, 360)
    assert main["fps"] and main["worker_id"] == "worker-test" and main["viewers"] == 0
    assert main["urls"]["whep"].endswith("/api/cameras/cam1/whep?stream=main")
    assert main["urls"]["mse"].startswith("ws://") and main["urls"]["rtsp"].endswith(f":{live.rtsp_port}/cam1")
    assert by[("cam1", "sub")]["urls"]["rtsp"].endswith("/cam1/sub")
    assert by[("cam265", "main")]["codec"] == "h265"
    assert not by[("dead", "main")]["online"] and by[("dead", "main")]["last_error"]
    # ?region= takes sub-regions; out-of-scope regions and cameras stay invisible.
    assert {r["camera_id"] for r in get(live, "/api/streams?region=t2").json()} == {"dead"}
    assert {r["camera_id"] for r in get(live, "/api/streams?region=county").json()} == {"cam1", "cam265", "dead"}
    town = {"Authorization": f"Bearer {live.state.tokens.issue('access', 'townviewer')[0]}"}
    assert {r["camera_id"] for r in httpx.get(live.base + "/api/streams", headers=town).json()} == {"dead"}
    assert httpx.get(live.base + "/api/streams?region=t1", headers=town).status_code == 404
    assert httpx.get(live.base + "/api/streams").status_code == 401


def _token(live: LiveWorld, camera: str) -> str:
    """The restream asks for a stream token in the URL (streams.live.restream)."""
    return live.state.tokens.issue("stream", "viewer", camera_id=camera)[0]


def test_rtsp_restream_is_read_by_ffprobe_and_pyav(live: LiveWorld):
    live.wait_online("cam1", "sub")
    url = f"rtsp://127.0.0.1:{live.rtsp_port}/cam1?token={_token(live, 'cam1')}"
    for transport in ("tcp", "udp"):
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-rtsp_transport", transport, "-show_streams", "-of", "json", url],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        stream = json.loads(out.stdout)["streams"][0]
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 640, 360)
    sub = f"rtsp://127.0.0.1:{live.rtsp_port}/cam1/sub?token={_token(live, 'cam1')}"
    with av.open(sub, options={"rtsp_transport": "tcp"}, timeout=10) as c:
        frames = []
        for frame in c.decode(video=0):
            frames.append(frame)
            if len(frames) == 10:
                break
    assert (frames[0].width, frames[0].height) == (320, 180)
    assert live.cameras.client_count("/cam1") == 1  # the restream did not pull the camera again


def test_rtsp_restream_is_read_by_gstreamer_rtspsrc_over_tcp_and_udp(live: LiveWorld):
    url = f"rtsp://127.0.0.1:{live.rtsp_port}/cam1?token={_token(live, 'cam1')}"
    for protocol in ("tcp", "udp"):
        out = subprocess.run(
            ["gst-launch-1.0", "-q", "rtspsrc", f"location={url}", f"protocols={protocol}", "latency=0", "!",
             "rtph264depay", "!", "h264parse", "!", "avdec_h264", "!", "fakesink", "num-buffers=25"],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (protocol, out.stderr[-2000:])


def test_a_webrtc_viewer_gets_picture_again_after_the_camera_restarts(live: LiveWorld):
    hub = live.hub("cam1")

    async def main() -> None:
        async with httpx.AsyncClient(base_url=live.base, timeout=10) as client:
            r = await whep_connect(client, "/api/cameras/cam1/whep", live.headers(), keep=10**6)
            assert not isinstance(r, httpx.Response), r.text
            await wait_frames(r, 5)
            generation = hub.params.generation
            await asyncio.to_thread(live.cameras.stop)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(live.cameras.start)
            deadline = asyncio.get_running_loop().time() + 30
            while hub.params.generation == generation and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.2)
            assert hub.params.generation > generation  # the new session announced its parameters
            before = len(r.frames)
            await wait_frames(r, before + 10, timeout=30)  # and the same viewer gets picture again
            assert r.pc.connectionState == "connected"
            await client.delete(r.location, headers=live.headers())
            await close(r)

    asyncio.run(main())
