"""The compact keyframe table: exact round trip, small for steady GOPs, older tables (version 1, 16-byte) still read."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from storage.index.keyframes import Keyframe, _pack_v1, pack_keyframes, unpack_keyframes

S = 1_000_000


@given(st.lists(st.tuples(st.integers(-10 * S, 3600 * S), st.integers(0, 1 << 40)), max_size=200))
def test_round_trip_is_exact(pairs: list[tuple[int, int]]) -> None:
    entries = [Keyframe(t, b) for t, b in pairs]
    assert unpack_keyframes(pack_keyframes(entries)) == entries


def test_a_steady_minute_is_under_three_bytes_a_gop() -> None:
    # 30 GOPs of 2 s, each about 1 MB (4 Mbit/s), sizes varying.
    offsets = [2_000 + sum(1_000_000 + (i * 37_001) % 200_000 for i in range(k)) for k in range(30)]
    entries = [Keyframe(k * 2 * S, offsets[k]) for k in range(30)]
    packed = pack_keyframes(entries)
    assert unpack_keyframes(packed) == entries
    assert len(packed) <= 90  # version 1: ~120 bytes; the 16-byte table: 480


@given(st.lists(st.tuples(st.integers(-10 * S, 3600 * S), st.integers(0, 1 << 40)), max_size=50))
def test_version_1_is_still_read(pairs: list[tuple[int, int]]) -> None:
    entries = [Keyframe(t, b) for t, b in pairs]
    assert unpack_keyframes(_pack_v1(entries)) == entries


def test_legacy_table_is_still_read() -> None:
    legacy = b"".join(struct.pack("<qQ", t, o) for t, o in [(0, 900), (2 * S, 500_000)])
    assert unpack_keyframes(legacy) == [Keyframe(0, 900), Keyframe(2 * S, 500_000)]
    assert unpack_keyframes(b"") == []
