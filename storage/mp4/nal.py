"""NAL units of H.264 and H.265: types, Annex-B splitting and parameter sets.

Bytes only (no sockets, no event loop), so the MP4 writers here, ingest and the RTSP
server all read bitstreams by one rule.
"""

from __future__ import annotations


NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9


# H.265 VPS, SPS, PPS nal_unit_types, in decoding order.
HEVC_PARAMETER_SETS = (32, 33, 34)


def nal_type(nal: bytes) -> int:
    """The nal_unit_type of an H.264 NAL unit (its first byte's low five bits)."""
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream into NAL units, without their start codes.

    Both 3- and 4-byte start codes are accepted. Trailing zero bytes before a start
    code (``trailing_zero_8bits``) are not part of the NAL unit and are stripped.
    """
    nals: list[bytes] = []
    n = len(data)
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = n if nxt < 0 else nxt
        nal = data[start:end].rstrip(b"\x00") if nxt >= 0 else data[start:end]
        if nal:
            nals.append(nal)
        i = nxt
    return nals


def parameter_set_nals(codec: str, nals: list[bytes]) -> tuple[bytes, ...]:
    """One of each parameter set in ``nals`` (``codec`` "h264" or "h265"), in decoding order;
    () unless all are there."""
    if codec == "h264":
        sps = next((n for n in nals if nal_type(n) == NAL_SPS), None)
        pps = next((n for n in nals if nal_type(n) == NAL_PPS), None)
        return (sps, pps) if sps and pps else ()
    found = {t: next((n for n in nals if (n[0] >> 1) & 0x3F == t), None) for t in HEVC_PARAMETER_SETS}
    return tuple(found[t] for t in HEVC_PARAMETER_SETS) if all(found.values()) else ()  # type: ignore[misc]


def parameter_sets_from_extradata(codec: str, extradata: bytes | None) -> tuple[bytes, ...]:
    """The parameter sets in a stream's extradata (Annex-B, avcC or hvcC), without start codes."""
    if not extradata:
        return ()
    if extradata[:3] == b"\x00\x00\x01" or extradata[:4] == b"\x00\x00\x00\x01":
        return parameter_set_nals(codec, split_annexb(extradata))
    nals: list[bytes] = []
    try:
        if codec == "h264" and extradata[0] == 1:  # avcC (ISO 14496-15 §5.3.3.1)
            pos = 6
            for count_mask in (0x1F, 0xFF):
                count = extradata[pos - 1] & count_mask
                for _ in range(count):
                    n = int.from_bytes(extradata[pos : pos + 2], "big")
                    nals.append(extradata[pos + 2 : pos + 2 + n])
                    pos += 2 + n
                pos += 1
        elif codec == "h265" and len(extradata) > 23:  # hvcC (§8.3.3.1)
            pos, arrays = 23, extradata[22]
            for _ in range(arrays):
                count = int.from_bytes(extradata[pos + 1 : pos + 3], "big")
                pos += 3
                for _ in range(count):
                    n = int.from_bytes(extradata[pos : pos + 2], "big")
                    nals.append(extradata[pos + 2 : pos + 2 + n])
                    pos += 2 + n
    except IndexError:
        return ()
    return parameter_set_nals(codec, nals)
