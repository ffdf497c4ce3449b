"""The aiortc side of live WebRTC: the passthrough track, its shared payloads, ICE servers.

Imported by ``streams.live.webrtc`` on the first WHEP offer, not with the API: aiortc and
PyAV cost an ingest worker some 60 MB, and a worker nobody watches over WebRTC needs neither.
"""

from __future__ import annotations

import weakref
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCIceServer, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from ingest.access_unit import AccessUnit
from ingest.live.fanout import AccessUnitSubscription
from ingest.live.hub import TIME_BASE_90K, annexb
from ingest.rtp.h264 import fu_a_payloads
from storage.mp4.nal import NAL_AUD, nal_type

# aiortc's own limit (aiortc.codecs.h264.PACKET_MAX): room for SRTP, header extensions and TURN.
WEBRTC_MAX_PAYLOAD = 1300
_payloads: weakref.WeakKeyDictionary[AccessUnit, list[bytes]] = weakref.WeakKeyDictionary()


def webrtc_payloads(au: AccessUnit) -> list[bytes]:
    """The RFC 6184 payloads (single NAL units and FU-A) of an access unit, computed once."""
    payloads = _payloads.get(au)
    if payloads is None:
        payloads = []
        for nal in au.nals:
            if nal_type(nal) == NAL_AUD:
                continue  # the RTP marker bit does the AUD's job
            payloads.extend(fu_a_payloads(nal, WEBRTC_MAX_PAYLOAD) if len(nal) > WEBRTC_MAX_PAYLOAD else (nal,))
        _payloads[au] = payloads
    return payloads


class SharedPayloads:
    """Takes the place of aiortc's H.264 encoder on a passthrough sender.

    aiortc's sender asks its encoder to ``pack`` each packet the track returns; the stock
    ``H264Encoder.pack`` splits and packetises it again for every viewer. This returns the
    payloads made once per access unit instead, so a viewer costs only RTP headers, SRTP
    and the send. It relies on the sender calling ``pack`` right after ``recv`` (aiortc
    1.x ``RTCRtpSender._next_encoded_frame``), and on the sender's private encoder slot;
    if a later aiortc changes either, ``install`` does nothing and aiortc packetises.
    """

    target_bitrate = 0  # aiortc sets it from REMB; passthrough cannot change the bitrate

    def __init__(self, track: HubTrack) -> None:
        self._track = track

    @classmethod
    def install(cls, sender: RTCRtpSender, track: HubTrack) -> bool:
        slot = "_RTCRtpSender__encoder"
        if getattr(sender, slot, "missing") is not None:
            return False
        setattr(sender, slot, cls(track))
        return True

    def pack(self, packet: av.Packet) -> tuple[list[bytes], int]:
        au = self._track.last
        assert au is not None and au.pts_90k == packet.pts, "pack() must follow recv()"
        return webrtc_payloads(au), au.pts_90k

    def encode(self, frame: object, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise TypeError("a passthrough track yields packets, not frames")
class HubTrack(MediaStreamTrack):
    """A video track that hands aiortc the hub's access units, already encoded."""

    kind = "video"

    def __init__(self, subscription: AccessUnitSubscription[AccessUnit]) -> None:
        super().__init__()
        self._subscription = subscription
        self.last: AccessUnit | None = None  # the access unit recv() returned last
        # True once SharedPayloads packs for this track: recv() then skips building the bytes.
        self.shared_payloads = False

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        try:
            au = await anext(self._subscription)
        except StopAsyncIteration:
            self.stop()
            raise MediaStreamError from None
        self.last = au
        packet = av.Packet(b"" if self.shared_payloads else annexb(au))
        packet.pts = au.pts_90k
        packet.dts = au.pts_90k
        packet.time_base = TIME_BASE_90K
        packet.is_keyframe = au.keyframe
        return packet

    def stop(self) -> None:
        self._subscription.close()
        super().stop()



def ice_servers(urls: list[str]) -> list[RTCIceServer]:
    """``stun:host:port`` or ``turn:user:password@host:port[?transport=tcp]`` into aiortc's form."""
    servers = []
    for url in urls:
        scheme, _, rest = url.partition(":")
        if "@" in rest:
            cred, _, host = rest.rpartition("@")
            user, _, password = cred.partition(":")
            servers.append(RTCIceServer(urls=f"{scheme}:{host}", username=user, credential=password))
        else:
            servers.append(RTCIceServer(urls=url))
    return servers



def h264_preferences() -> list[Any]:
    """aiortc's H.264 codecs (and RTX for them), the only ones a passthrough track can send."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in codecs if c.mimeType.lower() in ("video/h264", "video/rtx")]
