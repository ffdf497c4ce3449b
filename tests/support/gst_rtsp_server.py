#!/usr/bin/python3
"""Independent RTSP cameras for the test suite: Debian's gst-rtsp-server through python3-gi.

Run with Debian's ``/usr/bin/python3`` (python3-gi is not importable from the venv)::

    /usr/bin/python3 tests/support/gst_rtsp_server.py config.json

config.json::

    {
      "host": "127.0.0.1", "port": 8554,
      "status_file": "/tmp/x/status.json",      # optional, rewritten every 0.2 s
      "session_timeout": 10,                    # optional, seconds
      "auth": "basic",                          # optional: "basic" (default) or "digest"
      "mounts": {
        "/cam1": {"codec": "h264", "video": "/path/clip.h264", "fps": 25,
                  "audio": "/path/clip.aac",      # optional ADTS AAC -> pay1
                  "user": "admin", "password": "pw",  # optional; without them -> 401
                  "corrupt_ratio": 0.0,           # flip bytes in this fraction of AUs
                  "pay_options": "",              # appended to the video payloader
                  "seed": 1}
      }
    }

The clip is parsed once into access units (h264parse/h265parse/jpegparse/aacparse into
an appsink), kept in memory, and pushed into ``appsrc`` at real-time pace with
monotonically increasing timestamps across loop iterations. Factories are *shared*:
all clients of a mount share one pipeline. On stdout the server prints ``READY <port>``
once listening. The status file holds, per mount, ``sessions`` (RTSP sessions that set
up this mount), ``playing`` (of those, in PLAYING state) and ``pipelines`` (media
pipelines built since start).
"""

import json
import os
import random
import signal
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtsp, GstRtspServer  # noqa: E402, F401 - GstApp: appsrc signals

PARSERS = {"h264": "h264parse", "h265": "h265parse", "mjpeg": "jpegparse", "aac": "aacparse"}
PAY = {
    "h264": "h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "h265parse ! rtph265pay name=pay0 pt=96 config-interval=-1",
    "mjpeg": "jpegparse ! rtpjpegpay name=pay0 pt=26",
}
AAC_FRAME = 1024


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def load_units(path, codec):
    """Parse an elementary stream file into [(bytes, is_keyframe)], plus the caps string."""
    caps_filter = {
        "h264": "video/x-h264,stream-format=byte-stream,alignment=au",
        "h265": "video/x-h265,stream-format=byte-stream,alignment=au",
        "mjpeg": "image/jpeg",
        "aac": "audio/mpeg,stream-format=adts",
    }[codec]
    p = Gst.parse_launch(
        f'filesrc location="{path}" ! {PARSERS[codec]} ! {caps_filter} ! appsink name=s sync=false')
    sink = p.get_by_name("s")
    p.set_state(Gst.State.PLAYING)
    units, caps = [], None
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buf = sample.get_buffer()
        caps = caps or sample.get_caps()
        ok, info = buf.map(Gst.MapFlags.READ)
        units.append((bytes(info.data), not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)))
        buf.unmap(info)
    p.set_state(Gst.State.NULL)
    if not units:
        raise RuntimeError(f"no access units parsed from {path}")
    s = caps.get_structure(0).copy()
    s.remove_field("framerate")  # the mount's fps is used
    return units, s.to_string().rstrip(";")


class Mount:
    def __init__(self, path, cfg):
        self.path = path
        self.cfg = cfg
        self.codec = cfg.get("codec", "h264")
        self.fps = cfg.get("fps", 25)
        self.video, self.vcaps = load_units(cfg["video"], self.codec)
        # minimal caps: the parser after appsrc finds the rest from the stream
        self.vcaps = {"h264": "video/x-h264,stream-format=byte-stream,alignment=au",
                      "h265": "video/x-h265,stream-format=byte-stream,alignment=au",
                      "mjpeg": "image/jpeg"}[self.codec] + f",framerate={self.fps}/1"
        self.audio = self.acaps = None
        if cfg.get("audio"):
            self.audio, self.acaps = load_units(cfg["audio"], "aac")
            s = Gst.Structure.from_string(self.acaps)[0]
            self.rate = s.get_int("rate")[1] or 48000
        ratio = float(cfg.get("corrupt_ratio", 0) or 0)
        if ratio > 0:
            self.video = corrupt(self.video, ratio, cfg.get("seed", 1))
        self.pipelines = 0
        self.feeders = []

    def launch(self):
        v = (f'appsrc name=vsrc is-live=true format=time do-timestamp=false '
             f'caps="{self.vcaps}" ! {PAY[self.codec]} {self.cfg.get("pay_options") or ""}')
        if self.audio:
            v += (f' appsrc name=asrc is-live=true format=time do-timestamp=false '
                  f'caps="{self.acaps}" ! aacparse ! rtpmp4gpay name=pay1 pt=97')
        return f"( {v} )"


def corrupt(units, ratio, seed):
    rnd = random.Random(seed)
    out = []
    for data, key in units:
        if rnd.random() < ratio and len(data) > 64:
            b = bytearray(data)
            for _ in range(max(1, len(b) // 200)):
                i = rnd.randrange(32, len(b))
                b[i] ^= 0xFF
            data = bytes(b)
        out.append((data, key))
    return out


class Feeder(threading.Thread):
    """Pushes a mount's access units into one media's appsrc(s), paced at real time."""

    def __init__(self, mount, vsrc, asrc):
        super().__init__(daemon=True)
        self.mount, self.vsrc, self.asrc = mount, vsrc, asrc
        self.stopped = threading.Event()

    def run(self):
        m = self.mount
        vdur = Gst.SECOND // m.fps
        # streams: [src, units, duration_ns, next_index]
        streams = [[self.vsrc, m.video, vdur, 0]]
        if self.asrc is not None:
            streams.append([self.asrc, m.audio, Gst.SECOND * AAC_FRAME // m.rate, 0])
        t0 = time.monotonic()
        while not self.stopped.is_set():
            st = min(streams, key=lambda s: s[3] * s[2])
            src, units, dur, n = st
            pts = n * dur
            delay = t0 + pts / Gst.SECOND - time.monotonic()
            if delay > 0:
                if self.stopped.wait(delay):
                    break
            data, key = units[n % len(units)]
            buf = Gst.Buffer.new_wrapped(data)
            buf.pts = pts
            buf.dts = pts
            buf.duration = dur
            if not key:
                buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
            ret = src.emit("push-buffer", buf)
            if ret != Gst.FlowReturn.OK:
                if ret == Gst.FlowReturn.FLUSHING:
                    time.sleep(0.01)  # not yet playing / being torn down
                    st[3] = n + 1
                    continue
                break
            st[3] = n + 1


class Factory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, mount, medias):
        super().__init__()
        self.mount = mount
        self.medias = medias
        self.set_launch(mount.launch())
        self.set_shared(True)
        self.set_eos_shutdown(False)
        self.connect("media-configure", self.on_configure)

    def on_configure(self, factory, media):
        m = self.mount
        m.pipelines += 1
        el = media.get_element()
        vsrc = el.get_by_name("vsrc")
        asrc = el.get_by_name("asrc")
        feeder = Feeder(m, vsrc, asrc)
        self.medias[media] = m.path
        media.connect("unprepared", self.on_unprepared, feeder)
        feeder.start()

    def on_unprepared(self, media, feeder):
        feeder.stopped.set()
        self.medias.pop(media, None)


def main():
    cfg = json.load(open(sys.argv[1]))
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(cfg.get("host", "127.0.0.1"))
    server.set_service(str(cfg["port"]))
    timeout = int(cfg.get("session_timeout", 10))
    mounts_pt = server.get_mount_points()
    medias = {}
    mounts = {}

    auth = GstRtspServer.RTSPAuth()
    anon = GstRtspServer.RTSPToken()
    anon.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "anonymous")
    auth.set_default_token(anon)
    any_auth = False

    for path, mcfg in cfg["mounts"].items():
        m = Mount(path, mcfg)
        mounts[path] = m
        f = Factory(m, medias)
        perms = GstRtspServer.RTSPPermissions()
        if mcfg.get("user"):
            any_auth = True
            role = "user:" + mcfg["user"]
            tok = GstRtspServer.RTSPToken()
            tok.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, role)
            if cfg.get("auth", "basic") == "digest":
                auth.add_digest(mcfg["user"], mcfg.get("password", ""), tok)
            else:
                auth.add_basic(GstRtspServer.RTSPAuth.make_basic(mcfg["user"], mcfg.get("password", "")), tok)
            # anonymous may see the mount but not build it: gst-rtsp-server then answers
            # 401 with a WWW-Authenticate challenge (a role without access gives 404)
            perms.add_permission_for_role("anonymous", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
            perms.add_permission_for_role("anonymous", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, False)
        else:
            role = "anonymous"
        perms.add_permission_for_role(role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role(role, GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        f.set_permissions(perms)
        mounts_pt.add_factory(path, f)
    if any_auth:
        if cfg.get("auth", "basic") == "digest":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        server.set_auth(auth)

    def on_client(server, client):
        client.connect("new-session", lambda c, s: s.set_timeout(timeout))
    server.connect("client-connected", on_client)

    server.attach(None)
    loop = GLib.MainLoop()
    status_file = cfg.get("status_file")

    def status():
        out = {p: {"sessions": 0, "playing": 0, "pipelines": m.pipelines} for p, m in mounts.items()}
        pool = server.get_session_pool()

        def visit(pool, sess):
            for sm in sess.filter(None):
                p = medias.get(sm.get_media())
                if p in out:
                    out[p]["sessions"] += 1
                    if sm.get_rtsp_state() == GstRtsp.RTSPState.PLAYING:
                        out[p]["playing"] += 1
            return GstRtspServer.RTSPFilterResult.REF

        pool.filter(visit)
        pool.cleanup()
        if status_file:
            tmp = status_file + ".tmp"
            with open(tmp, "w") as fh:
                json.dump({"time": time.time(), "pid": os.getpid(), "mounts": out}, fh)
            os.replace(tmp, status_file)
        return True

    status()
    GLib.timeout_add(200, status)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
