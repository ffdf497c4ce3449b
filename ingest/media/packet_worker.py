"""``PacketWorker``: the off-thread half of a session tap; ``StreamDecoder``: the decode loop
every tap that needs pictures (snapshots, motion, transcode) runs on that thread.

A tap runs on the camera's session thread, so it must return at once. A
``PacketWorker`` is a tap that only queues the packet; its own thread does the
heavy work (decode, encode, JPEG). The queue is bounded: when the worker falls
behind, packets are dropped up to the next keyframe (a decoder cannot resume
mid-GOP) and every dropped packet is counted, so a slow consumer costs
pictures, never recording.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import av  # loaded by the first decode: a session tap that never decodes costs no PyAV

log = logging.getLogger(__name__)

_STOP = object()


class PacketWorker:
    """Call ``handle(packet, arrival_us)`` on a worker thread for each video packet given to ``__call__``.

    ``handle`` runs only on the worker thread. Audio packets are ignored. After a
    drop, the next packet handed on is a keyframe, so decoders see whole GOPs.
    """

    def __init__(self, name: str, handle: Callable[[av.Packet, int], None], *, clock: Callable[[], int],
                 maxsize: int = 64, on_stop: Callable[[], None] | None = None):
        self.name = name
        self.clock = clock
        self._handle = handle
        self._on_stop = on_stop
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._waiting_for_key = True  # a decoder can only start at a keyframe
        self.dropped = 0
        self.handled = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __call__(self, packet: av.Packet) -> None:
        """The tap: called on the session thread; never blocks."""
        if packet.stream is None or packet.stream.type != "video":
            return
        if self._waiting_for_key:
            if not packet.is_keyframe:
                self.dropped += 1
                return
            self._waiting_for_key = False
        try:
            self._queue.put_nowait((packet, self.clock()))
        except queue.Full:
            self.dropped += 1
            self._waiting_for_key = True

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued packets, then stop the thread."""
        while True:
            try:
                self._queue.put(_STOP, timeout=timeout)
                break
            except queue.Full:  # pragma: no cover - a stuck worker: give up on it
                log.warning("%s: worker did not drain its queue; leaving it", self.name)
                return
        self._thread.join(timeout)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until everything queued so far has been handled (for tests and shutdown)."""
        done = threading.Event()
        self._queue.put(done, timeout=timeout)
        done.wait(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._handle(*item)
                self.handled += 1
            except Exception:  # noqa: BLE001 - one bad packet must not end the worker
                self.failures += 1
                log.exception("%s: packet handling failed", self.name)
        if self._on_stop is not None:
            try:
                self._on_stop()
            except Exception:  # noqa: BLE001
                log.exception("%s: shutdown failed", self.name)


class StreamDecoder:
    """Decodes one camera stream's packets into frames, with a decoder of its own.

    A session reconnecting hands over packets of a new ``av`` stream, whose parameters
    may differ: the decoder is then made anew (after ``on_new_source``, where a consumer
    flushes or resets what depended on the old one). A packet the decoder refuses is
    counted in ``unreadable`` and yields no frames: one bad packet must not end the tap.
    ``keyframes_only`` makes FFmpeg skip every non-keyframe (``skip_frame=NONKEY``).
    """

    def __init__(self, name: str, *, keyframes_only: bool = False, threads: int = 1,
                 on_new_source: Callable[[], None] | None = None):
        self.name = name
        self.keyframes_only = keyframes_only
        self.threads = threads
        self.on_new_source = on_new_source
        self.unreadable = 0
        self._source: object = None
        self._decoder: av.VideoCodecContext | None = None

    def decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        """The frames ``packet`` completes (none while the decoder buffers, or for a bad packet)."""
        import av

        if packet.stream is not self._source or self._decoder is None:
            if self.on_new_source is not None:
                self.on_new_source()
            self._source = packet.stream
            self._decoder = _new_decoder(packet.stream, keyframes_only=self.keyframes_only, threads=self.threads)
        try:
            frames = self._decoder.decode(packet)
            if self.keyframes_only:
                # Every keyframe is a picture of its own: drain it now. A decoder that knows
                # the stream reorders (B-frames) would otherwise hold it back for as many
                # pictures as it reorders, i.e. GOPs here, and show an old keyframe as new.
                frames += self._decoder.decode(None)
                self._decoder.flush_buffers()
            return frames
        except av.error.FFmpegError as exc:
            self.unreadable += 1
            log.debug("%s: unreadable packet skipped: %s", self.name, exc)
            return []


def _new_decoder(stream: av.video.stream.VideoStream, *, keyframes_only: bool = False,
                 threads: int = 1) -> av.VideoCodecContext:
    """A decoder of our own for ``stream``'s codec (never the demuxer's context)."""
    import av

    src = stream.codec_context
    ctx = av.CodecContext.create(src.name, "r")
    if src.extradata:
        ctx.extradata = src.extradata
    ctx.thread_count = threads
    if keyframes_only:
        ctx.skip_frame = "NONKEY"
    return ctx  # type: ignore[return-value]
