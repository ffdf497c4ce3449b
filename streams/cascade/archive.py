"""``ArchiveSource``: a recorded range of one camera as access units, paced like live, for
an upper platform's ``INVITE s=Playback``.

The range is planned and read by the clip builder (``storage.archive.clips.plan_clip``: the
index says which GOPs, ``ClipPlan.iter_bytes`` fetches and checks them, gaps are skipped);
this module only takes the clip's fragmented MP4 apart again (``storage.mp4.read``) into
access units: each video sample's length-prefixed NAL units, the parameter sets of the init
segment in front of every keyframe that has none in-band, 90 kHz times from the clip's
decode and composition times.

``subscribe()`` hands them out at their own pace (``PsRtpSender`` takes a live hub or this):
in real time times ``scale``, a burst for the first GOP's pre-roll (the pictures before the
requested start, which the decoder needs), and a jump over a gap in the recording (more than
``GAP_SKIP_S`` without a picture) rather than a wait. ``pause()``, ``play()`` and ``scale`` are
what MANSRTSP ``PAUSE``/``PLAY``/``Scale:`` set. The iteration ends at the end of the range.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Iterator

from ingest.access_unit import AccessUnit
from storage.archive.clips import ClipError, ClipPlan
from storage.mp4.boxes import find_box, find_boxes, iter_boxes
from storage.mp4.nal import parameter_set_nals, parameter_sets_from_extradata
from storage.mp4.read import parse_init, scan_fragments
from storage.objects.store import ObjectStore

__all__ = ["ArchiveSource", "video_config", "access_units"]

GAP_SKIP_S = 2.0  # a longer pause between two pictures is a gap in the recording: skip it
_CONFIGS = {"avc1": ("h264", "avcC"), "avc3": ("h264", "avcC"), "hvc1": ("h265", "hvcC"), "hev1": ("h265", "hvcC")}


def video_config(init: bytes) -> tuple[int, str, tuple[bytes, ...], int]:
    """The video track of an init segment: (track id, codec "h264"/"h265", parameter sets,
    NAL length size). ``ValueError`` when there is none or its codec is neither."""
    tracks = parse_init(init)
    moov = find_box(init, "moov")
    assert moov is not None  # parse_init checked
    for trak in find_boxes(init, "trak", moov.payload_offset, moov.end):
        tkhd = find_box(init, "tkhd", trak.payload_offset, trak.end)
        stsd = find_box(init, "mdia/minf/stbl/stsd", trak.payload_offset, trak.end)
        if tkhd is None or stsd is None:
            continue
        p = tkhd.payload_offset
        track_id = struct.unpack_from(">I", init, p + (20 if init[p] == 1 else 12))[0]
        if tracks.get(track_id) is None or tracks[track_id].handler != "vide":
            continue
        for entry in iter_boxes(init, stsd.payload_offset + 8, stsd.end):
            if entry.type not in _CONFIGS:
                continue
            codec, config_type = _CONFIGS[entry.type]
            # A visual sample entry: 8 bytes of SampleEntry, 70 of VisualSampleEntry, then boxes.
            for child in iter_boxes(init, entry.payload_offset + 78, entry.end):
                if child.type == config_type:
                    config = bytes(init[child.payload_offset : child.end])
                    length_at = 4 if codec == "h264" else 21
                    length_size = (config[length_at] & 3) + 1 if len(config) > length_at else 4
                    return track_id, codec, parameter_sets_from_extradata(codec, config), length_size
        raise ValueError(f"video track {track_id} is neither H.264 nor H.265")
    raise ValueError("no video track in the init segment")


def _nals(sample: bytes, length_size: int) -> tuple[bytes, ...]:
    out = []
    pos = 0
    while pos + length_size <= len(sample):
        n = int.from_bytes(sample[pos : pos + length_size], "big")
        pos += length_size
        if n:
            out.append(sample[pos : pos + n])
        pos += n
    return tuple(out)


def access_units(plan: ClipPlan, store: ObjectStore) -> Iterator[list[AccessUnit]]:
    """The plan's video as access units, one list per fragment (GOP), in decode order
    (blocking: it reads the object store). Raises what ``ClipPlan.iter_bytes`` raises."""
    track_id, codec, sets, length_size = video_config(plan.header)
    tracks = parse_init(plan.header)
    scale = tracks[track_id].timescale
    buf = bytearray()
    chunks = plan.iter_bytes(store)
    next(chunks, None)  # the header: parsed above from plan.header
    for chunk in chunks:
        buf += chunk
        frags = scan_fragments(buf, tracks)
        if not frags:
            continue
        for frag in frags:
            run = frag.runs.get(track_id)
            units = []
            for s in run.samples if run is not None else []:
                nals = _nals(bytes(buf[s.data_offset : s.data_offset + s.size]), length_size)
                if s.keyframe and not parameter_set_nals(codec, list(nals)):
                    nals = sets + nals
                dts = s.decode_time * 90000 // scale
                pts = (s.decode_time + s.composition_offset) * 90000 // scale
                units.append(AccessUnit(nals, pts, s.keyframe, dts_90k=dts if dts != pts else None))
            if units:
                yield units
        del buf[: frags[-1].end]


class _Paced:
    """One pass over the source's access units, at the source's pace (see the module docstring)."""

    def __init__(self, source: ArchiveSource) -> None:
        self.source = source
        self._gops = access_units(source.plan, source.store)
        self._pending: deque[AccessUnit] = deque()
        self._anchor: tuple[float, int] | None = None  # (loop time, decode time 90k) that match
        self._anchor_scale = 1.0
        self._last: int | None = None
        self._closed = False

    def __aiter__(self) -> _Paced:
        return self

    async def __anext__(self) -> AccessUnit:
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            try:
                gop = await asyncio.to_thread(next, self._gops, None)
            except ClipError as exc:  # a segment missing or altered mid-range: end here, say why
                self.source.error = str(exc)
                gop = None
            if gop is None:
                raise StopAsyncIteration
            self._pending.extend(gop)
        au = self._pending.popleft()
        loop = asyncio.get_running_loop()
        src = self.source
        if not src.playing.is_set():
            await src.playing.wait()
            self._anchor = None  # resumed: from here on, time runs from now
        t = au.decode_90k
        if (self._anchor is None or self._anchor_scale != src.scale
                or (self._last is not None and t - self._last > GAP_SKIP_S * 90000)):
            self._anchor, self._anchor_scale = (loop.time(), t), src.scale
        self._last = t
        at, t0 = self._anchor
        delay = at + (t - t0) / 90000 / max(src.scale, 0.01) - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        src.sent += 1
        return au

    def close(self) -> None:
        self._closed = True


class ArchiveSource:
    """A planned range of the archive as an ``AccessUnitSource`` for ``PsRtpSender``."""

    def __init__(self, plan: ClipPlan, store: ObjectStore) -> None:
        self.plan = plan
        self.store = store
        self.camera_id = plan.camera_id
        self._codec = video_config(plan.header)[1]
        self.scale = 1.0
        self.playing = asyncio.Event()
        self.playing.set()
        self.sent = 0
        self.error = ""

    @property
    def codec(self) -> str:
        return self._codec

    def subscribe(self) -> _Paced:
        return _Paced(self)

    def pause(self) -> None:
        self.playing.clear()

    def play(self, scale: float | None = None) -> None:
        if scale is not None and scale > 0:
            self.scale = scale
        self.playing.set()
