"""Live view as fragmented MP4 over a WebSocket, for Media Source Extensions players.

``WS /api/cameras/{id}/live.mp4?stream=main|sub&token=<stream token>``. Browsers cannot
set headers on a WebSocket, so this route takes a stream token
(``POST /api/cameras/{id}/stream-token``) in ``?token=``, or a Bearer header from
non-browser clients.

Messages, server to client: a text message ``{"type": "init", "mime": ..., "width": ...,
"height": ...}`` then a binary init segment (ftyp+moov), then one binary fragment
(moof+mdat) per frame, for the lowest delay. A new text+init pair comes whenever the
camera's parameters change (a reconnect in another mode). Refusals are HTTP answers to
the upgrade request, as for every other route: 401, 404, 409, 429 or 503 with a JSON
``detail`` (browsers only see that the socket failed; other clients read the reason).

Muxing happens once per camera stream (``MseMuxer``), whatever the number of viewers:
they share the fragment bytes through an ``AccessUnitFanout``, so a new viewer starts at
the cached GOP's keyframe and one that falls behind skips forward to the next keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Query, WebSocket, WebSocketDisconnect

from ingest.live.fanout import AccessUnitFanout, AccessUnitSubscription
from ingest.access_unit import AccessUnit
from storage.mp4.nal import NAL_PPS, NAL_SPS, nal_type
from ingest.live.hub import LiveHub
from streams.access.guard import Principal, allow, audit, live_sessions, live_view, stream_principal
from streams.access.live_sessions import LiveView
from storage.mp4.live import Sample, avc_codec_string, fragment, init_segment
from streams.context import LiveViews
from streams.live.viewers import StreamParam, hub_for_viewer

log = logging.getLogger(__name__)

router = APIRouter()

# Fragments (frames) a viewer may lag before it is skipped to the next keyframe: 2 s at 25 fps.
MAX_LAG_FRAGMENTS = 50


@dataclass(frozen=True, eq=False)
class Fragment:
    """One frame's moof+mdat, shared by every viewer, with the init segment it needs."""

    data: bytes
    keyframe: bool
    init: bytes
    mime: str
    width: int
    height: int
    decode_time: int = 0  # 90 kHz, on the hub's timeline
    duration: int = 3600  # 90 kHz


class MseMuxer:
    """Muxes one hub's access units into fMP4 once and fans the fragments out."""

    def __init__(self, hub: LiveHub, on_idle: Any) -> None:
        self.hub = hub
        self.fanout: AccessUnitFanout[Fragment] = AccessUnitFanout(max_queue=MAX_LAG_FRAGMENTS)
        self._on_idle = on_idle
        self._subscription: AccessUnitSubscription[AccessUnit] = hub.subscribe()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"mse-mux-{hub.camera_id}-{hub.stream}")
        self._init = b""
        self._mime = ""
        self._params: tuple[bytes, bytes] | None = None
        self._size = (0, 0)
        self._last_dts: int | None = None
        self._duration = 3600
        self._sequence = 0
        self.viewers = 0

    async def _run(self) -> None:
        try:
            async for au in self._subscription:
                frag = self.mux(au)
                if frag is not None:
                    self.fanout.publish(frag)
        finally:
            self.fanout.close()

    def mux(self, au: AccessUnit) -> Fragment | None:
        if au.keyframe:
            sps = next((n for n in au.nals if nal_type(n) == NAL_SPS), None)
            pps = next((n for n in au.nals if nal_type(n) == NAL_PPS), None)
            if sps and pps and (sps, pps) != self._params:
                params = self.hub.params
                width, height = (params.width, params.height) if params else (0, 0)
                self._params = (sps, pps)
                self._init = init_segment(sps, pps, width, height)
                self._mime = f'video/mp4; codecs="{avc_codec_string(sps)}"'
                self._size = (width, height)
        if not self._init:
            return None  # no keyframe yet
        # Decode time and durations from the DTS; a B-frame keeps its pts as a composition offset.
        dts = au.decode_90k
        if self._last_dts is not None and 0 < dts - self._last_dts <= 90000:
            self._duration = dts - self._last_dts
        self._last_dts = dts
        self._sequence += 1
        data = fragment(self._sequence, [Sample(au.nals, dts, self._duration, au.keyframe, au.pts_90k - dts)])
        return Fragment(data, au.keyframe, self._init, self._mime, *self._size, dts, self._duration)

    def join(self) -> AccessUnitSubscription[Fragment]:
        self.viewers += 1
        return self.fanout.subscribe()

    def leave(self, subscription: AccessUnitSubscription[Fragment]) -> None:
        subscription.close()
        self.viewers -= 1
        if self.viewers <= 0:
            self.close()

    def close(self) -> None:
        self._subscription.close()
        self._task.cancel()
        self.fanout.close()
        self._on_idle(self)


def muxer_for(app: Any, hub: LiveHub) -> MseMuxer:
    """The camera stream's shared muxer, started on first use and stopped with its last viewer."""
    muxers = app.state.ctx.live.mse
    key = (hub.camera_id, hub.stream)
    muxer = muxers.get(key)
    if muxer is None or muxer.hub is not hub:
        muxer = muxers[key] = MseMuxer(hub, lambda m: muxers.pop(key, None) if muxers.get(key) is m else None)
    return muxer


def close_all(live: LiveViews) -> None:
    for muxer in list(live.mse.values()):
        muxer.close()


@router.websocket("/api/cameras/{id}/live.mp4")
async def live_mp4(
    websocket: WebSocket,
    id: str,
    stream: StreamParam = Query("main"),
    principal: Principal = allow("viewer", query_token=True),
) -> None:
    """fMP4 live stream: JSON init description, init segment, then one fragment per frame."""
    assert principal.camera is not None
    # A refusal raised here (or by ``allow``) is answered before the upgrade as a plain HTTP
    # response with its JSON body (the WebSocket Denial Response extension, which uvicorn has).
    check_origin(websocket)
    hub = hub_for_viewer(websocket, principal.camera, stream)
    ended = asyncio.Event()
    why: list[str] = []

    def stop(reason: str) -> None:
        why.append(reason)
        ended.set()

    view = live_view(websocket, principal, "mse", stop)
    hub.viewers += 1  # before any await, so concurrent connects cannot all pass the limit
    muxer = muxer_for(websocket.app, hub)
    subscription = muxer.join()
    try:
        await websocket.accept()
    except Exception:
        muxer.leave(subscription)
        hub.viewers -= 1
        live_sessions(websocket).remove(view)
        raise
    audit(websocket, "live_start", detail=f"mse stream={stream}")
    reader = asyncio.get_running_loop().create_task(_read_until_closed(websocket, view))
    stopped = asyncio.get_running_loop().create_task(ended.wait())
    skipped = 0
    try:
        sent_init = b""
        while True:
            next_fragment = asyncio.ensure_future(anext(subscription))
            done, _ = await asyncio.wait({next_fragment, reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stopped in done:
                next_fragment.cancel()
                # 1008: policy violation, the code for "no longer allowed".
                await websocket.close(code=1008, reason=why[0][:120] if why else "ended")
                break
            if reader in done:
                next_fragment.cancel()
                break
            try:
                frag = next_fragment.result()
            except StopAsyncIteration:
                await websocket.close(code=1001, reason="the camera stream ended")
                break
            if frag.init is not sent_init:
                await websocket.send_text(json.dumps({"type": "init", "mime": frag.mime,
                                                      "width": frag.width, "height": frag.height}))
                await websocket.send_bytes(frag.init)
                sent_init = frag.init
            await websocket.send_bytes(frag.data)
            skipped = subscription.dropped
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass
    finally:
        reader.cancel()
        stopped.cancel()
        live_sessions(websocket).remove(view)
        muxer.leave(subscription)
        hub.viewers -= 1
        reason = f" ended: {why[0]}" if why else ""
        with contextlib.suppress(Exception):
            audit(websocket, "live_stop", detail=f"mse stream={stream} skipped_frames={skipped}{reason}")


async def _read_until_closed(websocket: WebSocket, view: LiveView) -> None:
    """Reading tells us when the client goes away. The one message it may send is a renewal,
    ``{"type": "renew", "token": "<new stream token>"}``: the view ends when its token expires."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if not text or len(text) > 8192:
                continue
            try:
                request = json.loads(text)
                token = request["token"] if request.get("type") == "renew" else None
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if not isinstance(token, str):
                continue
            try:
                renewed = await asyncio.to_thread(stream_principal, websocket.app.state.ctx.auth, token, view.camera_id)
            except HTTPException:
                await websocket.send_text(json.dumps({"type": "renew", "ok": False}))
                continue
            if renewed.name == view.user:
                live_sessions(websocket).renew(view, renewed.expires_us)
                await websocket.send_text(json.dumps({"type": "renew", "ok": True}))


def check_origin(websocket: WebSocket) -> None:
    """A browser names the page that opened the socket in ``Origin``: refuse other sites' pages
    (cross-site WebSocket hijacking). Clients that are not browsers send no Origin."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return
    host = websocket.headers.get("host", "")
    if urlsplit(origin).netloc.lower() != host.lower():
        raise HTTPException(403, detail=f"WebSocket from origin {origin!r} refused: open the console on {host}")
