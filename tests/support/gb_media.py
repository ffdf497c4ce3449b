"""A recorder of GB/T 28181 channels for tests: our SIP endpoint on its own loop thread, a
``GbLink`` with a fixed device directory (the device's SIP address is SIPp's), and the real
``Supervisor`` making ``GbMediaSession`` objects for the channels.

    with GbRecorder.start(tmp_path, {CHANNEL: (DEVICE, Peer("UDP", "127.0.0.1", sipp.port))}) as rec:
        rec.wait_for(lambda: rec.status(CHANNEL)["state"] == "recording", 30, "recording")
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import av

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.gb28181.media.receiver import PortPool
from ingest.gb28181.media.sdp import MediaTransport
from ingest.gb28181.media.session import GbLink, GbMediaSession, gb_session_factory
from ingest.gb28181.sip import Peer, SipEndpoint, Timers
from ingest.supervisor import Supervisor
from sharpeyes.services import Services
from tests.support.clips import read_frame_code
from tests.support.databases import process_database_url

OUR_ID = "34020000002000000001"
DOMAIN = "3402000000"


@dataclass
class StaticDevices:
    """The device directory of a test: a fixed address per device, or offline with a reason."""

    peers: dict[str, Peer | None] = field(default_factory=dict)

    def peer(self, device_id: str) -> Peer | None:
        return self.peers.get(device_id)

    invites: list[tuple[str, str, str, str]] = field(default_factory=list)

    def offline_reason(self, device_id: str) -> str:
        return "not registered" if device_id not in self.peers else "keepalives stopped"

    def record_invite(self, device_id: str, *, channel: str, outcome: str, reason: str = "") -> None:
        self.invites.append((device_id, channel, outcome, reason))


class LoopThread:
    """An asyncio loop on a daemon thread (as the GB service runs one)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gb-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class GbRecorder:
    services: Services
    supervisor: Supervisor
    link: GbLink
    devices: StaticDevices
    loop: LoopThread
    _closed: int | None = None

    @classmethod
    def start(cls, data_dir: Path, channels: dict[str, tuple[str, Peer | None]], *,
              transport: MediaTransport = "udp", ports: tuple[int, int] = (31000, 31099), live: bool = True,
              **settings: Any) -> "GbRecorder":
        """``live=False``: the channels are registered disabled (nothing INVITEs them by itself)."""
        kw: dict[str, Any] = {"data_dir": data_dir, "registry_poll_seconds": 0.5, "connect_timeout_seconds": 5,
                              "stall_timeout_seconds": 5}
        database_url = process_database_url(data_dir)
        if database_url:
            kw["database_url"] = database_url
        kw.update(settings)
        svc = Services(Settings(**kw))
        loop = LoopThread()
        endpoint = SipEndpoint(user=OUR_ID, domain=DOMAIN, host="127.0.0.1", port=0,
                               timers=Timers(t1=0.1, t2=1.0, t4=1.0))
        loop.run(endpoint.start())
        devices = StaticDevices({dev: peer for dev, peer in channels.values()})
        link = GbLink(loop=loop.loop, endpoint=endpoint, devices=devices, our_id=OUR_ID, domain=DOMAIN,
                      media_host="127.0.0.1", ports=PortPool(*ports), bind_host="127.0.0.1",
                      default_transport=transport, invite_timeout=4.0)
        svc.registry.add_region(Region(code="r", name="Test region"))
        svc.registry.add_cameras([Camera(id=cid, name=cid, region="r", source="gb28181", gb_device_id=dev,
                                         enabled=live) for cid, (dev, _) in channels.items()])
        sup = Supervisor(svc.settings, svc.registry, svc.index, svc.store,
                         session_factory=gb_session_factory(
                             link, lambda cam: cam.gb_device_id if cam.source == "gb28181" else None))
        sup.start()
        return cls(svc, sup, link, devices, loop)

    def __enter__(self) -> "GbRecorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> int:
        """Stop recording (closing and uploading open segments); returns what is left in the spool."""
        if self._closed is not None:
            return self._closed
        self._closed = self.supervisor.close()
        self.loop.run(self.link.endpoint.close())
        self.loop.close()
        return self._closed

    @property
    def index(self):  # type: ignore[no-untyped-def]
        return self.services.index

    def session(self, camera_id: str) -> GbMediaSession:
        s = self.supervisor.session(camera_id)
        assert isinstance(s, GbMediaSession)
        return s

    def status(self, camera_id: str) -> dict[str, Any]:
        s = self.supervisor.session(camera_id)
        return s.status.as_dict() if s else {}

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if predicate():
                return time.monotonic() - t0
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def segment_frame_codes(data: bytes) -> tuple[str, list[int], bool]:
    """(codec, frame codes, first frame is a keyframe) of one recorded segment, all frames decoded."""
    with av.open(io.BytesIO(data)) as c:
        codec = c.streams.video[0].codec_context.name
        frames = list(c.decode(video=0))
    return codec, [read_frame_code(f.to_ndarray(format="gray")) for f in frames], bool(frames and frames[0].key_frame)
