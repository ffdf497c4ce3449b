"""``DevicePlayback``: a device's own recording of a past range, played to an investigator as MP4.

For times we do not have (``GET /api/cameras/{id}/device-playback.mp4?start&end``): INVITE
``s=Playback`` (``u=CHANNEL:0``, ``t=START END``, a history SSRC), PS demuxed as for live, and the
access units remuxed with no re-encode into a fragmented MP4 (one fragment per GOP) that is
handed out as it is written, so the browser plays while the device sends. It ends at the end of
the range (by the device's clock: ``start + (pts - first pts)``), when the device sends BYE, or
after ``media_timeout`` without data; then BYE. Nothing is stored: this is viewing, not backfill.
"""

from __future__ import annotations

import queue
from typing import Iterator

import av

from ingest.gb28181.media.receiver import MediaReceiver
from ingest.gb28181.media.session import GbLink, invite_media, packet_template, received_video, to_packet
from ingest.recording.session import SessionFailure
from storage.index.segments import now_us


class _Chunks:
    """A write-only file for PyAV that keeps what was written until taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


class DevicePlayback:
    def __init__(self, link: GbLink, channel_id: str, device_id: str, *, media_timeout: float = 10.0,
                 connect_timeout: float = 10.0) -> None:
        self.link = link
        self.channel_id = channel_id
        self.device_id = device_id
        self.media_timeout = media_timeout
        self.connect_timeout = connect_timeout
        self.frames = 0

    def mp4(self, start_us: int, end_us: int) -> Iterator[bytes]:
        """Fragmented MP4 bytes of ``[start, end)`` as they come (blocking: iterate on a worker thread)."""
        link = self.link
        peer = link.devices.peer(self.device_id)
        if peer is None:
            raise SessionFailure("offline", "device_offline", f"camera {self.channel_id}: device {self.device_id} "
                                 f"is offline ({link.devices.offline_reason(self.device_id)})")
        payloads: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        receiver = MediaReceiver(self.channel_id, link.transport_for(self.device_id), link.bind_host, link.ports,
                                 payloads.put)
        dialog = link.run(invite_media(link, self.channel_id, self.device_id, peer, receiver.transport, receiver,
                                       clock=now_us, connect_timeout=self.connect_timeout, session="Playback",
                                       start_s=start_us // 1_000_000, end_s=-(-end_us // 1_000_000))
                          ).result(self.connect_timeout + 40)
        try:
            yield from self._remux(payloads, dialog, end_us - (start_us // 1_000_000) * 1_000_000)
        finally:
            link.run(_hang_up(dialog, receiver)).result(10)

    def _remux(self, payloads: queue.SimpleQueue[bytes | None], dialog, span_us: int) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        out = _Chunks()
        container = None
        template = None
        stream = None
        first_pts: int | None = None
        ended = False  # the end came from the stream, not from the reader going away
        try:
            for frame in received_video(payloads, dialog, self.media_timeout):
                if template is None:
                    if not frame.keyframe:
                        continue
                    template = packet_template(frame)
                    container = av.open(out, "w", format="mp4",
                                        options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
                    stream = container.add_stream_from_template(template[1])
                    if frame.codec == "h265":
                        stream.codec_tag = "hvc1"
                    first_pts = frame.pts_90k
                assert first_pts is not None and container is not None and stream is not None
                if (frame.pts_90k - first_pts) * 1_000_000 // 90_000 >= span_us:
                    break
                packet = to_packet(frame, template[1])
                packet.pts = packet.dts = frame.pts_90k - first_pts
                packet.stream = stream
                container.mux(packet)
                self.frames += 1
                chunk = out.take()
                if chunk:
                    yield chunk
            ended = True
        finally:
            if container is not None:
                container.close()
                tail = out.take()
                if tail and ended:
                    yield tail
            if template is not None:
                template[0].close()


async def _hang_up(dialog, receiver: MediaReceiver) -> None:  # type: ignore[no-untyped-def]
    try:
        if not dialog.ended.is_set():
            await dialog.bye("playback done")
    finally:
        receiver.close()
