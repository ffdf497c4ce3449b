"""``DeviceBackfill``: a GB/T 28181 device's own recording of a gap, downloaded into our archive.

``sharpeyes gb backfill CAMERA --from --to`` (and ``POST /api/cameras/{id}/backfill``) run it in
the process that holds the SIP server. For each gap of the camera's main stream inside the range
(nothing we already have is fetched again):

1. INVITE ``s=Download`` with ``u=CHANNEL:0``, ``t=START END`` (UNIX seconds), a history SSRC
   (``y=1...``) and ``a=downloadspeed:4``; the device sends PS faster than real time.
2. Frames are placed by the device's clock, not ours: ``start + (pts - first pts)``. They go to
   a ``Segmenter`` of their own (origin ``"device"``), whose segments take the ordinary way
   (spool, uploader, index) and are marked ``origin = "device"`` in the index and in every
   export manifest that uses them. Frames outside the gap are dropped, so a backfilled segment
   never overlaps one recorded live.
3. It ends when the media reaches the end of the gap, when the device sends BYE (its "download
   finished"), or after ``media_timeout`` without data; then BYE and the next gap.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass, field
from typing import Callable

from config.cameras import Camera
from ingest.gb28181.media.receiver import MediaReceiver
from ingest.gb28181.media.session import GbLink, invite_media, packet_template, received_video, to_packet
from ingest.recording.segmenter import Segmenter
from ingest.recording.session import SessionFailure
from ingest.recording.spool import Spool, SpoolEntry
from storage.index.segments import SegmentIndex, now_us

log = logging.getLogger(__name__)

ORIGIN_DEVICE = "device"


@dataclass
class BackfillPart:
    """One gap asked of the device, and what came of it."""

    start_us: int
    end_us: int
    segments: int = 0
    frames: int = 0
    covered_us: int = 0
    error: str = ""


@dataclass
class BackfillReport:
    camera_id: str
    parts: list[BackfillPart] = field(default_factory=list)

    @property
    def segments(self) -> int:
        return sum(p.segments for p in self.parts)

    def as_dict(self) -> dict:
        return {"camera_id": self.camera_id, "segments": self.segments,
                "parts": [p.__dict__ for p in self.parts]}


def missing_ranges(index: SegmentIndex, camera_id: str, start_us: int, end_us: int,
                   min_us: int = 1_000_000) -> list[tuple[int, int]]:
    """The parts of [start, end) no main-stream segment covers, at least ``min_us`` long."""
    out: list[tuple[int, int]] = []
    cursor = start_us
    for seg in index.segments(camera_id, "main", start_us, end_us):
        if seg.start_us - cursor >= min_us:
            out.append((cursor, min(seg.start_us, end_us)))
        cursor = max(cursor, seg.end_us)
    if end_us - cursor >= min_us:
        out.append((cursor, end_us))
    return out


class DeviceBackfill:
    """Downloads ``camera``'s missing ranges from its device (blocking: run it on a worker thread)."""

    def __init__(self, link: GbLink, camera: Camera, device_id: str, index: SegmentIndex, spool: Spool, *,
                 on_closed: Callable[[SpoolEntry], None], target_us: int = 60_000_000,
                 media_timeout: float = 10.0, connect_timeout: float = 10.0, worker_id: str = "") -> None:
        self.link = link
        self.camera = camera
        self.device_id = device_id
        self.index = index
        self.spool = spool
        self.on_closed = on_closed
        self.target_us = target_us
        self.media_timeout = media_timeout
        self.connect_timeout = connect_timeout
        self.worker_id = worker_id

    def run(self, start_us: int, end_us: int) -> BackfillReport:
        report = BackfillReport(self.camera.id)
        for gap_start, gap_end in missing_ranges(self.index, self.camera.id, start_us, end_us):
            part = BackfillPart(gap_start, gap_end)
            report.parts.append(part)
            try:
                self._download(part)
            except SessionFailure as exc:
                part.error = str(exc)
                log.warning("%s", exc)
        return report

    def _download(self, part: BackfillPart) -> None:
        link = self.link
        cam = self.camera.id
        peer = link.devices.peer(self.device_id)
        if peer is None:
            raise SessionFailure("offline", "device_offline", f"camera {cam}: device {self.device_id} is offline "
                                 f"({link.devices.offline_reason(self.device_id)}); cannot download its recording")
        payloads: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        receiver = MediaReceiver(cam, link.transport_for(self.device_id), link.bind_host, link.ports, payloads.put)
        start_s, end_s = part.start_us // 1_000_000, -(-part.end_us // 1_000_000)
        dialog = link.run(invite_media(link, cam, self.device_id, peer, receiver.transport, receiver, clock=now_us,
                                       connect_timeout=self.connect_timeout, session="Download",
                                       start_s=start_s, end_s=end_s)).result(self.connect_timeout + 40)
        segmenter = Segmenter(cam, "main", self.spool, target_us=self.target_us, clock=now_us,
                              on_closed=self._closed(part), worker_id=self.worker_id, origin=ORIGIN_DEVICE,
                              max_drift_us=10**15, last_end_us=part.start_us)
        try:
            self._receive(part, payloads, dialog, segmenter)
        finally:
            segmenter.end_run()
            link.run(self._hang_up(dialog, receiver)).result(10)

    def _closed(self, part: BackfillPart):  # type: ignore[no-untyped-def]
        def closed(entry: SpoolEntry) -> None:
            part.segments += 1
            part.covered_us += (entry.end_us or entry.start_us) - entry.start_us
            self.on_closed(entry)
        return closed

    @staticmethod
    async def _hang_up(dialog, receiver: MediaReceiver) -> None:  # type: ignore[no-untyped-def]
        try:
            if not dialog.ended.is_set():
                await dialog.bye("download done")
        finally:
            receiver.close()

    def _receive(self, part: BackfillPart, payloads: queue.SimpleQueue[bytes | None], dialog,  # type: ignore[no-untyped-def]
                 segmenter: Segmenter) -> None:
        template = None
        first_pts: int | None = None
        # Where the device's recording starts: t= asked for whole seconds from part.start_us down.
        base_us = (part.start_us // 1_000_000) * 1_000_000
        try:
            for frame in received_video(payloads, dialog, self.media_timeout):
                if first_pts is None:
                    first_pts = frame.pts_90k
                t_us = base_us + (frame.pts_90k - first_pts) * 1_000_000 // 90_000
                if t_us + 40_000 > part.end_us:
                    return  # the gap is full (a frame's length short, so nothing overlaps after it)
                if t_us < part.start_us:
                    continue
                if template is None:
                    if not frame.keyframe:
                        continue
                    template = packet_template(frame)
                    segmenter.start_input(template[1], None)
                part.frames += 1
                segmenter.push_video(to_packet(frame, template[1]), t_us)
        finally:
            if template is not None:
                template[0].close()
