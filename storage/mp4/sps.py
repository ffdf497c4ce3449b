"""Sequence parameter sets of H.264 and H.265: just the fields recording needs.

The one field that matters most is the **reorder depth**: how many frames a decoder must
hold before it may output one (H.264 VUI ``max_num_reorder_frames``, H.265
``sps_max_num_reorder_pics``). It is 0 for a stream without B-frames; a camera that sends
B-frames has 1 or more, and its decode order differs from its presentation order. RTP
carries only presentation times, so the decode times an MP4 needs are derived from this
depth (``storage.mp4.decode_time``).

Bitstream reading here is exp-Golomb over the RBSP (emulation-prevention bytes removed),
ITU-T H.264 §7.3.2.1.1 / E.1.1 and H.265 §7.3.2.2 / §7.3.3. Bytes only, no state.
"""

from __future__ import annotations

from dataclasses import dataclass


class BitReader:
    """Reads bits MSB first from an RBSP; raises ``ValueError`` past its end."""

    def __init__(self, rbsp: bytes):
        self._data = rbsp
        self._pos = 0  # in bits

    def u(self, n: int) -> int:
        """``n`` bits as an unsigned integer (u(n))."""
        value = 0
        for _ in range(n):
            byte = self._pos >> 3
            if byte >= len(self._data):
                raise ValueError("SPS ends early")
            value = (value << 1) | ((self._data[byte] >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def flag(self) -> bool:
        return self.u(1) == 1

    def ue(self) -> int:
        """An unsigned exp-Golomb code (ue(v))."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """A signed exp-Golomb code (se(v))."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)

    def skip(self, n: int) -> None:
        self._pos += n


def rbsp(nal_payload: bytes) -> bytes:
    """``nal_payload`` without its emulation-prevention bytes (every 0x03 after 0x00 0x00)."""
    out = bytearray()
    zeros = 0
    for b in nal_payload:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


@dataclass(frozen=True)
class SequenceInfo:
    """What recording reads from an SPS.

    ``reorder_depth`` is the stream's own statement (``None`` when an H.264 SPS has no VUI
    bitstream restriction: then only observation tells). ``max_reorder_depth`` is the most
    the level allows, the safe bound when the SPS says nothing.
    """

    codec: str  # "h264" | "h265"
    profile_idc: int
    level_idc: int
    width: int
    height: int
    reorder_depth: int | None
    max_reorder_depth: int
    max_dec_frame_buffering: int | None = None

    @property
    def has_reordering(self) -> bool | None:
        """True if the stream may send B-frames (decode order != presentation order)."""
        return None if self.reorder_depth is None else self.reorder_depth > 0


def parse_sps(codec: str, nal: bytes) -> SequenceInfo:
    """Parse an SPS NAL unit (with its NAL header, no start code); ``codec`` "h264" or "h265"
    (FFmpeg's "hevc" is accepted). Raises ``ValueError`` on a truncated or foreign unit."""
    if codec == "h264":
        return _parse_h264(nal)
    if codec in ("h265", "hevc"):
        return _parse_h265(nal)
    raise ValueError(f"no SPS parser for codec {codec!r}")


# -- H.264 -------------------------------------------------------------------------------------

_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
# Table A-1: MaxDpbMbs by level_idc (level 1b, signalled as 11 + constraint_set3, as 11).
_MAX_DPB_MBS = {9: 396, 10: 396, 11: 900, 12: 2376, 13: 2376, 20: 2376, 21: 4752, 22: 8100, 30: 8100,
                31: 18000, 32: 20480, 40: 32768, 41: 32768, 42: 34816, 50: 110400, 51: 184320,
                52: 184320, 60: 696320, 61: 696320, 62: 696320}


def _scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se() + 256) % 256
        last = nxt or last


def _hrd_parameters(r: BitReader) -> None:
    cpb_cnt = r.ue() + 1
    r.skip(8)  # bit_rate_scale, cpb_size_scale
    for _ in range(cpb_cnt):
        r.ue()
        r.ue()
        r.skip(1)
    r.skip(20)  # four 5-bit lengths


def _parse_h264(nal: bytes) -> SequenceInfo:
    if not nal or nal[0] & 0x1F != 7:
        raise ValueError("not an H.264 SPS NAL unit")
    r = BitReader(rbsp(nal[1:]))
    profile = r.u(8)
    constraints = r.u(8)
    level = r.u(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    if profile in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            r.skip(1)  # separate_colour_plane_flag
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag():
                    _scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.skip(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    max_num_ref_frames = r.ue()
    r.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.flag()
    if not frame_mbs_only:
        r.skip(1)
    r.skip(1)  # direct_8x8_inference_flag
    height_mbs = height_map_units * (1 if frame_mbs_only else 2)
    width, height = width_mbs * 16, height_mbs * 16
    if r.flag():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        crop_x = 1 if chroma_format_idc in (0, 3) else 2
        crop_y = (1 if chroma_format_idc in (0, 2, 3) else 2) * (1 if frame_mbs_only else 2)
        width -= crop_x * (left + right)
        height -= crop_y * (top + bottom)
    dpb_frames = min(_MAX_DPB_MBS.get(level, 696320) // (width_mbs * height_mbs), 16)
    max_depth = max(dpb_frames, max_num_ref_frames)
    reorder: int | None = None
    buffering: int | None = None
    # Baseline and constrained profiles have no B slices; intra profiles with
    # constraint_set3 have no reordering (E.2.1's inference).
    constrained_baseline = profile == 66 or (profile == 77 and constraints & 0x20)
    if constrained_baseline or (profile in (44, 86, 100, 110, 122, 244) and constraints & 0x10):
        reorder = 0
    if r.flag():  # vui_parameters_present_flag
        reorder, buffering = _h264_vui_reorder(r, reorder)
    return SequenceInfo("h264", profile, level, width, height, reorder, max_depth, buffering)


def _h264_vui_reorder(r: BitReader, inferred: int | None) -> tuple[int | None, int | None]:
    """(max_num_reorder_frames, max_dec_frame_buffering) from the VUI, if it restricts them."""
    try:
        if r.flag():  # aspect_ratio_info_present_flag
            if r.u(8) == 255:
                r.skip(32)
        if r.flag():  # overscan_info_present_flag
            r.skip(1)
        if r.flag():  # video_signal_type_present_flag
            r.skip(4)
            if r.flag():
                r.skip(24)
        if r.flag():  # chroma_loc_info_present_flag
            r.ue()
            r.ue()
        if r.flag():  # timing_info_present_flag
            r.skip(65)
        nal_hrd = r.flag()
        if nal_hrd:
            _hrd_parameters(r)
        vcl_hrd = r.flag()
        if vcl_hrd:
            _hrd_parameters(r)
        if nal_hrd or vcl_hrd:
            r.skip(1)  # low_delay_hrd_flag
        r.skip(1)  # pic_struct_present_flag
        if not r.flag():  # bitstream_restriction_flag
            return inferred, None
        r.skip(1)
        for _ in range(4):
            r.ue()
        return r.ue(), r.ue()
    except ValueError:
        # A VUI cut short (seen in the wild): the fields before it stand.
        return inferred, None


# -- H.265 -------------------------------------------------------------------------------------

def _profile_tier_level(r: BitReader, max_sub_layers_minus1: int) -> tuple[int, int]:
    r.skip(3)  # general_profile_space, general_tier_flag
    profile = r.u(5)
    r.skip(32 + 48)  # compatibility flags; progressive..reserved 43 bits + 1
    level = r.u(8)
    present = [(r.flag(), r.flag()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        r.skip(2 * (8 - max_sub_layers_minus1))
    for profile_present, level_present in present:
        if profile_present:
            r.skip(88)
        if level_present:
            r.skip(8)
    return profile, level


def _parse_h265(nal: bytes) -> SequenceInfo:
    if len(nal) < 3 or (nal[0] >> 1) & 0x3F != 33:
        raise ValueError("not an H.265 SPS NAL unit")
    r = BitReader(rbsp(nal[2:]))
    r.skip(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.u(3)
    r.skip(1)  # sps_temporal_id_nesting_flag
    profile, level = _profile_tier_level(r, max_sub_layers_minus1)
    r.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = r.ue()
    if chroma_format_idc == 3:
        r.skip(1)
    width, height = r.ue(), r.ue()
    if r.flag():  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w = 2 if chroma_format_idc in (1, 2) else 1
        sub_h = 2 if chroma_format_idc == 1 else 1
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    r.ue()  # bit_depth_luma_minus8
    r.ue()  # bit_depth_chroma_minus8
    r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    all_layers = r.flag()  # sps_sub_layer_ordering_info_present_flag
    reorder = buffering = 0
    for _ in range(0 if all_layers else max_sub_layers_minus1, max_sub_layers_minus1 + 1):
        buffering = r.ue() + 1  # sps_max_dec_pic_buffering_minus1
        reorder = r.ue()  # sps_max_num_reorder_pics
        r.ue()  # sps_max_latency_increase_plus1
    # The highest sub-layer's values are the whole stream's (the last read).
    return SequenceInfo("h265", profile, level, width, height, reorder, max(buffering - 1, reorder), buffering)


def sequence_info(codec: str, parameter_sets: tuple[bytes, ...]) -> SequenceInfo | None:
    """The SPS among ``parameter_sets`` (as ``storage.mp4.nal.parameter_set_nals`` orders
    them: H.264 SPS, PPS; H.265 VPS, SPS, PPS), parsed; None if missing or unreadable."""
    h265 = codec in ("h265", "hevc")
    if len(parameter_sets) < (3 if h265 else 2):
        return None
    try:
        return parse_sps("h265" if h265 else "h264", parameter_sets[1 if h265 else 0])
    except ValueError:
        return None
