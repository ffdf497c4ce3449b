"""Live view over WebRTC, signalled WHEP-style, with aiortc in passthrough (no re-encode).

``POST /api/cameras/{id}/whep?stream=main|sub`` takes an SDP offer (``application/sdp``)
and answers 201 with the SDP answer and a ``Location`` to ``DELETE`` when done. The video
track yields the live hub's access units as ``av.Packet``s: aiortc's H.264 "encoder"
only packetises packets it is given (``H264Encoder.pack``), so nothing is decoded or
encoded. H.264 is forced with ``setCodecPreferences`` on the transceiver that the offer's
video m-line binds to, before ``setRemoteDescription``; otherwise aiortc may pick VP8 and
would have to decode and encode every frame.

Loopback: aioice never offers 127.0.0.1 as a host candidate. ``webrtc_host_addresses``
(e.g. ``[127.0.0.1]``) replaces aioice's address list; see ``use_host_addresses`` and
docs/live.md.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from ingest.live.hub import LiveHub
from streams.access.guard import Principal, allow, audit, live_sessions, live_view
from streams.access.live_sessions import LiveView
from streams.context import LiveViews
from streams.live.viewers import StreamParam, hub_for_viewer

if TYPE_CHECKING:
    # aiortc (and PyAV) load with the first WHEP offer (streams.live.webrtc_peer): an ingest
    # worker nobody watches over WebRTC does not carry them.
    from aiortc import RTCPeerConnection

    from streams.live.webrtc_peer import HubTrack

log = logging.getLogger(__name__)

router = APIRouter()

MAX_OFFER_BYTES = 64 * 1024
# Packetise each access unit once per camera and share the payloads among viewers (True),
# or let aiortc packetise it again for every viewer (False: the benchmark's baseline).
PACKETISE_ONCE = True


_H264_RTPMAP = re.compile(r"^a=rtpmap:\d+ H264/90000", re.IGNORECASE | re.MULTILINE)


@dataclass(eq=False)
class WhepSession:
    id: str
    camera_id: str
    stream: str
    hub: LiveHub
    pc: RTCPeerConnection
    track: HubTrack
    request: Request  # the POST: its principal and client address sign live_stop too
    view: LiveView | None = None
    closed: bool = False


def _sessions(request: Request) -> dict[str, WhepSession]:
    sessions: dict[str, WhepSession] = request.app.state.ctx.live.whep
    return sessions


_original_host_addresses: Any = None


def use_host_addresses(addresses: list[str]) -> None:
    """Make aioice offer exactly ``addresses`` as ICE host candidates (empty: its own choice).

    aioice's ``get_host_addresses`` lists every interface address except 127.0.0.1, so
    two peers on loopback (tests, a player on the same host) never connect. aioice has
    no option for it; its connection looks the function up in ``aioice.ice`` at gather
    time, so replacing it there is enough. It is process-wide, like the setting.
    """
    global _original_host_addresses
    if not addresses and _original_host_addresses is None:
        return  # nothing replaced: aioice (aiortc's) need not even be loaded
    import aioice.ice

    if _original_host_addresses is None:
        _original_host_addresses = aioice.ice.get_host_addresses
    if not addresses:
        aioice.ice.get_host_addresses = _original_host_addresses
        return
    fixed = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


async def _close(session: WhepSession, reason: str) -> None:
    if session.closed:
        return
    session.closed = True
    _sessions(session.request).pop(session.id, None)
    if session.view is not None:
        live_sessions(session.request).remove(session.view)
    session.hub.viewers -= 1
    session.track.stop()
    await session.pc.close()
    try:
        audit(session.request, "live_stop", camera_id=session.camera_id,
              detail=f"webrtc stream={session.stream} session={session.id} {reason}")
    except Exception:  # noqa: BLE001 - the audit store being down must not leak a peer connection
        log.exception("could not audit live_stop for camera %s", session.camera_id)


@router.post("/api/cameras/{id}/whep", status_code=201, response_class=Response,
             responses={201: {"content": {"application/sdp": {}}}})
async def whep_offer(
    id: str,
    request: Request,
    stream: StreamParam = Query("main"),
    principal: Principal = allow("viewer"),
) -> Response:
    """WHEP: an SDP offer in, the SDP answer out (201, ``Location`` to DELETE when done)."""
    assert principal.camera is not None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        raise HTTPException(415, detail="send the SDP offer with Content-Type: application/sdp")
    body = await request.body()
    if len(body) > MAX_OFFER_BYTES:
        raise HTTPException(413, detail=f"the SDP offer is larger than {MAX_OFFER_BYTES} bytes")
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, detail="the SDP offer is not UTF-8 text") from None
    if not offer.startswith("v=0") or "\nm=video " not in offer.replace("\r\n", "\n"):
        raise HTTPException(400, detail="malformed SDP offer: expected v=0 and a video m-line (recvonly)")
    if not _H264_RTPMAP.search(offer):
        raise HTTPException(400, detail="the offer has no H.264 codec; live video is H.264 only (enable H.264 in the client)")
    hub = hub_for_viewer(request, principal.camera, stream, webrtc=True)
    holder: list[WhepSession] = []

    async def stop(reason: str) -> None:
        if holder:
            await _close(holder[0], reason)

    # Not connected yet: the sweep ends it if ICE never completes (a dead offer must not hold a slot).
    view = live_view(request, principal, "webrtc", stop, connected=False)
    hub.viewers += 1  # counted now, so concurrent offers cannot all pass the limit
    settings = request.app.state.ctx.settings
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from streams.live.webrtc_peer import HubTrack, SharedPayloads, h264_preferences, ice_servers

    pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(settings.ice_servers)))
    subscription = hub.subscribe()
    track = HubTrack(subscription)
    try:
        transceiver = pc.addTransceiver(track, direction="sendonly")
        if PACKETISE_ONCE:
            track.shared_payloads = SharedPayloads.install(transceiver.sender, track)
        # Before setRemoteDescription: the offer's video m-line binds to this transceiver,
        # and the codecs are negotiated there from these preferences.
        transceiver.setCodecPreferences(h264_preferences())
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds on a bad offer
        hub.viewers -= 1
        live_sessions(request).remove(view)
        track.stop()
        await pc.close()
        raise HTTPException(400, detail=f"the SDP offer cannot be answered: {type(exc).__name__}: {exc}") from None
    session = WhepSession(secrets.token_urlsafe(16), id, stream, hub, pc, track, request, view)
    holder.append(session)
    _sessions(request)[session.id] = session

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState == "connected":
            view.connected = True
        if pc.connectionState in ("failed", "closed"):
            await _close(session, f"connection {pc.connectionState}")

    audit(request, "live_start", detail=f"webrtc stream={stream} session={session.id}")
    location = f"/api/cameras/{id}/whep/{session.id}"
    return Response(pc.localDescription.sdp, status_code=201, media_type="application/sdp",
                    headers={"Location": location})


@router.delete("/api/cameras/{id}/whep/{session_id}", status_code=200)
async def whep_delete(id: str, session_id: str, request: Request, principal: Principal = allow("viewer")) -> dict[str, str]:
    """End a WHEP session (the ``Location`` the POST returned).

    An unknown or already ended session is 410 Gone, so that 404 keeps meaning "no such
    camera (for you)" on every camera route."""
    session = _sessions(request).get(session_id)
    if session is None or session.camera_id != id:
        raise HTTPException(410, detail=f"camera {id}: no live WebRTC session {session_id} (already ended?)")
    if session.view is not None and session.view.user != principal.name and principal.role != "admin":
        # Another viewer's session: only its own user (or an admin) may end it.
        raise HTTPException(403, detail=f"camera {id}: WebRTC session {session_id} is another user's")
    await _close(session, f"deleted by {principal.name}")
    return {"status": "ended"}


@router.patch("/api/cameras/{id}/whep/{session_id}", status_code=200)
async def whep_renew(id: str, session_id: str, request: Request, principal: Principal = allow("viewer")) -> dict[str, Any]:
    """Keep a WHEP session going with a fresh access token: a session ends when the token it was
    opened (or last renewed) with expires. The console renews every few minutes."""
    session = _sessions(request).get(session_id)
    if session is None or session.camera_id != id or session.view is None or session.view.user != principal.name:
        raise HTTPException(410, detail=f"camera {id}: no live WebRTC session {session_id} of yours (already ended?)")
    live_sessions(request).renew(session.view, principal.expires_us)
    return {"status": "renewed", "expires_us": principal.expires_us}


async def close_all(live: LiveViews) -> None:
    """End every WHEP session (at shutdown)."""
    for session in list(live.whep.values()):
        await _close(session, "server stopping")

