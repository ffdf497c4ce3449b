"""Live view as Low-Latency HLS (RFC 8216bis): ``GET /api/cameras/{id}/live.m3u8?stream=&token=``.

For players that cannot do WebRTC or MSE: VLC, ffplay, Safari, other platforms. Media is
fMP4 from the camera stream's shared ``MseMuxer`` (muxed once, whatever the number of
viewers): segments start at keyframes and last about ``SEGMENT_TARGET_S`` (or one GOP if
longer), and are cut into parts of at most ``PART_TARGET_S`` (0.5 s) that are listed as soon
as they are complete. Blocking playlist reload (``_HLS_msn``/``_HLS_part``) is supported.

Players fetch the playlist, the init segment and media by themselves and cannot set
headers, so every URI in the playlist carries the caller's ``?token=`` (a stream token,
``POST /api/cameras/{id}/stream-token``). A packager starts with the first playlist
request and stops ``IDLE_S`` after the last request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from ingest.live.fanout import AccessUnitSubscription
from ingest.live.hub import LiveHub
from streams.access.guard import Principal, allow, audit_viewing
from streams.context import LiveViews
from streams.live.viewers import StreamParam, hub_for_viewer
from streams.live.mse import Fragment, MseMuxer, muxer_for

log = logging.getLogger(__name__)

router = APIRouter()

PART_TARGET_S = 0.5
SEGMENT_TARGET_S = 2.0
WINDOW_SEGMENTS = 6  # complete segments kept in the playlist
IDLE_S = 30.0
BLOCK_TIMEOUT_S = 6.0  # how long a blocking reload may wait (3 target durations)
PLAYLIST = "application/vnd.apple.mpegurl"
_MEDIA_NAME = re.compile(r"^(\d+)(?:\.(\d+))?\.m4s$")


@dataclass
class Part:
    data: bytes
    duration: float
    independent: bool


@dataclass
class Segment:
    msn: int
    init: bytes
    discontinuity: bool
    parts: list[Part] = field(default_factory=list)
    complete: bool = False

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.parts)


class HlsPackager:
    """Cuts one camera stream's fMP4 fragments into LL-HLS segments and parts."""

    def __init__(self, muxer: MseMuxer, on_idle: Any) -> None:
        self.muxer = muxer
        self.hub: LiveHub = muxer.hub
        self._on_idle = on_idle
        self._subscription: AccessUnitSubscription[Fragment] = muxer.join()
        self.segments: deque[Segment] = deque()
        self.last_request = time.monotonic()
        self._changed = asyncio.Event()
        self._next_msn = 0
        self._discontinuity_sequence = 0  # discontinuities that left the window
        self.closed = False
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"hls-{self.hub.camera_id}-{self.hub.stream}")
        self._reaper = loop.create_task(self._reap())

    # -- cutting ----------------------------------------------------------------------

    async def _run(self) -> None:
        current: Segment | None = None
        part: list[Fragment] = []
        init = b""
        try:
            async for frag in self._subscription:
                new_init = frag.init is not init
                if current is not None and frag.keyframe and (new_init or current.duration + _seconds(part) >= SEGMENT_TARGET_S):
                    self._close_part(current, part)
                    part = []
                    current.complete = True
                    current = None
                if current is None:
                    if not frag.keyframe:
                        continue  # a segment starts at a keyframe (a skip after overflow lands here too)
                    current = Segment(self._next_msn, frag.init, discontinuity=new_init and bool(init))
                    init = frag.init
                    self._next_msn += 1
                    self.segments.append(current)
                    while sum(1 for s in self.segments if s.complete) > WINDOW_SEGMENTS:
                        if self.segments.popleft().discontinuity:
                            self._discontinuity_sequence += 1
                part.append(frag)
                # Close the part when one more frame would take it past the part target.
                if _seconds(part) + frag.duration / 90000 > PART_TARGET_S + 1e-6:
                    self._close_part(current, part)
                    part = []
        finally:
            self.close()

    def _close_part(self, segment: Segment, frags: list[Fragment]) -> None:
        if not frags:
            return
        segment.parts.append(Part(b"".join(f.data for f in frags), _seconds(frags), frags[0].keyframe))
        self._changed.set()
        self._changed = asyncio.Event()

    # -- serving ----------------------------------------------------------------------

    async def wait_for(self, msn: int, part: int | None) -> None:
        """Block until segment ``msn`` (part ``part``) is listed, up to BLOCK_TIMEOUT_S."""
        deadline = time.monotonic() + BLOCK_TIMEOUT_S
        while not self._has(msn, part):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise HTTPException(503, detail=f"camera {self.hub.camera_id}: segment {msn} part {part} "
                                                "did not come in time; is the camera online?")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    def _has(self, msn: int, part: int | None) -> bool:
        for seg in self.segments:
            if seg.msn == msn:
                return seg.complete if part is None else len(seg.parts) > part or seg.complete
        return bool(self.segments) and self.segments[-1].msn > msn

    def playlist(self, query: str) -> str:
        """The media playlist; ``query`` (``stream=…&token=…``) is appended to every URI."""
        segs = [s for s in self.segments if s.parts]
        target = max([math.ceil(s.duration) for s in segs if s.complete] + [math.ceil(SEGMENT_TARGET_S)])
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:9",
            f"#EXT-X-TARGETDURATION:{target}",
            f"#EXT-X-PART-INF:PART-TARGET={PART_TARGET_S:.3f}",
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * PART_TARGET_S:.3f}",
            f"#EXT-X-MEDIA-SEQUENCE:{segs[0].msn if segs else self._next_msn}",
        ]
        if self._discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}")
        init: bytes | None = None
        # Parts are listed for the last segments only (the spec asks for the last 3 target durations).
        recent = {s.msn for s in segs[-2:]}
        for seg in segs:
            if seg.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if seg.init is not init:
                lines.append(f'#EXT-X-MAP:URI="live/init-{_init_id(seg.init)}.mp4?{query}"')
                init = seg.init
            if seg.msn in recent:
                for i, p in enumerate(seg.parts):
                    independent = ",INDEPENDENT=YES" if p.independent else ""
                    lines.append(f'#EXT-X-PART:DURATION={p.duration:.5f},URI="live/{seg.msn}.{i}.m4s?{query}"{independent}')
            if seg.complete:
                lines.append(f"#EXTINF:{seg.duration:.5f},")
                lines.append(f"live/{seg.msn}.m4s?{query}")
        if segs and not segs[-1].complete:
            last = segs[-1]
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="live/{last.msn}.{len(last.parts)}.m4s?{query}"')
        elif segs:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="live/{segs[-1].msn + 1}.0.m4s?{query}"')
        return "\n".join(lines) + "\n"

    def media(self, msn: int, part: int | None) -> bytes | None:
        for seg in self.segments:
            if seg.msn == msn:
                if part is None:
                    return b"".join(p.data for p in seg.parts) if seg.complete else None
                return seg.parts[part].data if part < len(seg.parts) else None
        return None

    def init_segment(self, init_id: str) -> bytes | None:
        for seg in self.segments:
            if _init_id(seg.init) == init_id:
                return seg.init
        return None

    # -- lifecycle -------------------------------------------------------------------

    async def _reap(self) -> None:
        while not self.closed:
            await asyncio.sleep(1.0)
            if time.monotonic() - self.last_request > IDLE_S:
                self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._changed.set()
        self.muxer.leave(self._subscription)
        self._task.cancel()
        self._reaper.cancel()
        self._on_idle(self)


def _seconds(frags: list[Fragment]) -> float:
    return sum(f.duration for f in frags) / 90000


def _init_id(init: bytes) -> str:
    # Init segments change only when the camera's parameters do; a short stable id per object.
    return f"{id(init) & 0xFFFFFFFF:08x}"


def _packager(request: Request, hub: LiveHub) -> HlsPackager:
    packagers = request.app.state.ctx.live.hls
    key = (hub.camera_id, hub.stream)
    packager = packagers.get(key)
    if packager is None or packager.closed or packager.hub is not hub:
        def forget(p: HlsPackager) -> None:
            if packagers.get(key) is p:
                packagers.pop(key, None)

        packager = packagers[key] = HlsPackager(muxer_for(request.app, hub), forget)
    packager.last_request = time.monotonic()
    return packager


def close_all(live: LiveViews) -> None:
    for packager in list(live.hls.values()):
        packager.close()


def _audit_viewer(request: Request, stream: str) -> None:
    """One ``live_start`` row per viewer (caller and address), however many playlists and parts
    they fetch: the packager is shared, the record is not. A viewer idle for longer than a
    session lives (``IDLE_S``) starts a new viewing. HLS has no stop row: a viewer leaves by
    not asking again."""
    audit_viewing(request, "live_start", ("hls", stream), window_s=IDLE_S, detail=f"hls stream={stream}")


def _query(request: Request, stream: str) -> str:
    token = request.query_params.get("token")
    return f"stream={stream}" + (f"&token={token}" if token else "")


@router.get("/api/cameras/{id}/live.m3u8", response_class=Response, responses={200: {"content": {PLAYLIST: {}}}})
async def live_playlist(
    id: str,
    request: Request,
    stream: StreamParam = Query("main"),
    msn: int | None = Query(None, alias="_HLS_msn", ge=0),
    part: int | None = Query(None, alias="_HLS_part", ge=0),
    principal: Principal = allow("viewer", query_token=True),
) -> Response:
    """The LL-HLS media playlist (blocking reload with ``_HLS_msn``/``_HLS_part``)."""
    assert principal.camera is not None
    packagers = request.app.state.ctx.live.hls
    active = packagers.get((id, stream))
    if active is None or active.closed:
        hub = hub_for_viewer(request, principal.camera, stream)
        active = _packager(request, hub)
    _audit_viewer(request, stream)
    active.last_request = time.monotonic()
    if msn is not None:
        await active.wait_for(msn, part)
    elif not any(s.complete for s in active.segments):
        # A fresh session: wait for its first whole segment (at most a GOP or so, the
        # cached GOP comes at once), so that players without LL-HLS support (ffmpeg, VLC)
        # find a segment in their first playlist.
        await active.wait_for(0, None)
    return Response(active.playlist(_query(request, stream)), media_type=PLAYLIST,
                    headers={"Cache-Control": "no-cache"})


@router.get("/api/cameras/{id}/live/{name}", response_class=Response)
async def live_media(
    id: str,
    name: str,
    request: Request,
    stream: StreamParam = Query("main"),
    principal: Principal = allow("viewer", query_token=True),
) -> Response:
    """An LL-HLS init segment (``init-….mp4``), segment (``{msn}.m4s``) or part (``{msn}.{part}.m4s``)."""
    packager = request.app.state.ctx.live.hls.get((id, stream))
    if packager is None or packager.closed:
        raise HTTPException(410, detail=f"camera {id}: no live HLS session for stream={stream}; "
                                        "GET live.m3u8 first (sessions end 30 s after the last request)")
    packager.last_request = time.monotonic()
    _audit_viewer(request, stream)
    if name.startswith("init-") and name.endswith(".mp4"):
        data = packager.init_segment(name[5:-4])
        media_type = "video/mp4"
    else:
        m = _MEDIA_NAME.match(name)
        if m is None:
            raise HTTPException(400, detail=f"{name}: expected init-ID.mp4, MSN.m4s or MSN.PART.m4s")
        msn, part = int(m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)
        if packager.segments and msn >= packager.segments[0].msn:
            await packager.wait_for(msn, part)  # a preload hint: answer when the part is there
        data = packager.media(msn, part)
        media_type = "video/iso.segment"
    if data is None:
        raise HTTPException(410, detail=f"camera {id}: {name} is no longer in the live window; reload the playlist")
    return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=60"})
