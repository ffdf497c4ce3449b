"""RTP from an independent payloader: GStreamer's ``rtph264pay``/``rtph265pay``/``rtpmp4gpay``.

``gst-launch-1.0`` encodes a test pattern, writes the elementary stream it payloads to a
reference file (the truth to compare with) and the RTP packets through ``rtpstreampay``
(RFC 4571 framing) to another file, so depacketiser tests read packets no code of ours made.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ingest.rtp.framing import Rfc4571Decoder

ENCODERS = {
    "h264": "x264enc key-int-max={gop} bframes=0 tune=zerolatency speed-preset=ultrafast option-string=slices={slices}"
            " ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au",
    "h265": "x265enc key-int-max={gop} tune=zerolatency speed-preset=ultrafast option-string=slices={slices}"
            " ! h265parse config-interval=-1 ! video/x-h265,stream-format=byte-stream,alignment=au",
}
PAYLOADERS = {"h264": "rtph264pay", "h265": "rtph265pay"}


@dataclass
class RtpCapture:
    packets: list[bytes]  # RTP packets as the payloader sent them
    reference: bytes  # the Annex-B (or ADTS) stream that was payloaded
    caps: str  # the payloader's caps (fmtp parameters for AAC)


def capture_video(tmp: Path, codec: str, *, frames: int = 50, gop: int = 10, slices: int = 1,
                  size: tuple[int, int] = (320, 240), mtu: int = 1200, pay_options: str = "",
                  timestamp_offset: int | None = None, seqnum_offset: int | None = None) -> RtpCapture:
    """Encode ``frames`` frames and payload them; ``pay_options`` go to the payloader as is."""
    ref, rtp = tmp / f"ref.{codec}", tmp / f"rtp-{codec}.bin"
    opts = pay_options
    if timestamp_offset is not None:
        opts += f" timestamp-offset={timestamp_offset}"
    if seqnum_offset is not None:
        opts += f" seqnum-offset={seqnum_offset}"
    w, h = size
    pipeline = (f"videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width={w},height={h},framerate=25/1 ! "
                + ENCODERS[codec].format(gop=gop, slices=slices)
                + f" ! tee name=t t. ! queue ! filesink location={ref} t. ! queue ! "
                f"{PAYLOADERS[codec]} mtu={mtu} config-interval=0 {opts} ! rtpstreampay ! filesink location={rtp}")
    subprocess.run(["gst-launch-1.0", "-q", *pipeline.split()], check=True, timeout=120, capture_output=True)
    return RtpCapture(Rfc4571Decoder().feed(rtp.read_bytes()), ref.read_bytes(), "")


def capture_aac(tmp: Path, *, buffers: int = 40) -> RtpCapture:
    """AAC (avenc_aac) through ``rtpmp4gpay``; ``caps`` carries its ``config``, ``sizelength`` and so on."""
    ref, rtp = tmp / "ref.aac", tmp / "rtp-aac.bin"
    pipeline = (f"audiotestsrc num-buffers={buffers} ! audio/x-raw,rate=48000,channels=1 ! avenc_aac ! aacparse ! "
                f"audio/mpeg,stream-format=adts ! tee name=t t. ! queue ! filesink location={ref} t. ! queue ! "
                f"aacparse ! audio/mpeg,stream-format=raw ! rtpmp4gpay ! rtpstreampay ! filesink location={rtp}")
    run = subprocess.run(["gst-launch-1.0", "-v", *pipeline.split()], check=True, timeout=120, capture_output=True,
                         text=True)
    caps = next(m.group(0) for m in re.finditer(r"application/x-rtp, media=\(string\)audio[^\n]*", run.stdout))
    return RtpCapture(Rfc4571Decoder().feed(rtp.read_bytes()), ref.read_bytes(), caps)


def caps_field(caps: str, name: str) -> str:
    """One field of a GStreamer caps string, e.g. ``config`` of ``config=(string)1190``."""
    m = re.search(rf"\b{name}=\([a-z]+\)([^,]+)", caps)
    if m is None:
        raise KeyError(name)
    return m.group(1).strip()
