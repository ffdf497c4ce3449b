"""ISO BMFF boxes (ISO/IEC 14496-12): finding them, building them, and the fragment boxes
(``mfhd``, ``tfhd``, ``tfdt``, ``trun``) read and written with named flags.

Everything in ``storage.mp4`` that touches a box's bytes goes through here: the segment
parser (``read``), the clip rewriter (``edit``), the live fMP4 writer (``live``). The
readers return where each field sits as well as its value, so a caller can patch a
fragment in place (size-neutral) without walking the flags again.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

__all__ = [
    "NON_SYNC_SAMPLE_FLAGS",
    "SAMPLE_DEPENDS_ON_NONE",
    "SAMPLE_DEPENDS_ON_OTHERS",
    "SAMPLE_IS_NON_SYNC",
    "SYNC_SAMPLE_FLAGS",
    "TFHD_BASE_DATA_OFFSET",
    "TFHD_DEFAULT_BASE_IS_MOOF",
    "TFHD_DEFAULT_SAMPLE_DURATION",
    "TFHD_DEFAULT_SAMPLE_FLAGS",
    "TFHD_DEFAULT_SAMPLE_SIZE",
    "TFHD_DURATION_IS_EMPTY",
    "TFHD_SAMPLE_DESCRIPTION_INDEX",
    "TRUN_DATA_OFFSET",
    "TRUN_FIRST_SAMPLE_FLAGS",
    "TRUN_SAMPLE_COMPOSITION_TIME_OFFSET",
    "TRUN_SAMPLE_DURATION",
    "TRUN_SAMPLE_FLAGS",
    "TRUN_SAMPLE_SIZE",
    "Box",
    "Tfdt",
    "Tfhd",
    "Trun",
    "TrunEntry",
    "TrunSample",
    "box",
    "find_box",
    "find_boxes",
    "full_box",
    "is_sync",
    "iter_boxes",
    "mfhd_box",
    "read_mfhd",
    "read_tfdt",
    "read_tfhd",
    "read_trun",
    "sample_flags",
    "tfdt_box",
    "tfhd_box",
    "trun_box",
]

_HEADER = struct.Struct(">I4s")

# -- sample flags (14496-12 8.8.3.1): one 32-bit word per sample in trex/tfhd/trun --------

SAMPLE_DEPENDS_ON_OTHERS = 0x01000000  # sample_depends_on = 1: not an I picture
SAMPLE_DEPENDS_ON_NONE = 0x02000000  # sample_depends_on = 2: an I picture
SAMPLE_IS_NON_SYNC = 0x00010000  # sample_is_non_sync_sample
SYNC_SAMPLE_FLAGS = SAMPLE_DEPENDS_ON_NONE
NON_SYNC_SAMPLE_FLAGS = SAMPLE_DEPENDS_ON_OTHERS | SAMPLE_IS_NON_SYNC


def sample_flags(keyframe: bool) -> int:
    """The flags word our writers give a sample: a sync I picture, or a dependent non-sync one."""
    return SYNC_SAMPLE_FLAGS if keyframe else NON_SYNC_SAMPLE_FLAGS


def is_sync(flags: int) -> bool:
    """Whether a sample with these flags is a sync sample (a keyframe)."""
    return not flags & SAMPLE_IS_NON_SYNC


# -- tfhd and trun flags (14496-12 8.8.7, 8.8.8): which optional fields are present -------

TFHD_BASE_DATA_OFFSET = 0x000001
TFHD_SAMPLE_DESCRIPTION_INDEX = 0x000002
TFHD_DEFAULT_SAMPLE_DURATION = 0x000008
TFHD_DEFAULT_SAMPLE_SIZE = 0x000010
TFHD_DEFAULT_SAMPLE_FLAGS = 0x000020
TFHD_DURATION_IS_EMPTY = 0x010000
TFHD_DEFAULT_BASE_IS_MOOF = 0x020000

TRUN_DATA_OFFSET = 0x000001
TRUN_FIRST_SAMPLE_FLAGS = 0x000004
TRUN_SAMPLE_DURATION = 0x000100
TRUN_SAMPLE_SIZE = 0x000200
TRUN_SAMPLE_FLAGS = 0x000400
TRUN_SAMPLE_COMPOSITION_TIME_OFFSET = 0x000800

# Optional fields in the order the flags make them present: (flag, name, struct format).
_TFHD_FIELDS = (
    (TFHD_BASE_DATA_OFFSET, "base_data_offset", "Q"),
    (TFHD_SAMPLE_DESCRIPTION_INDEX, "sample_description_index", "I"),
    (TFHD_DEFAULT_SAMPLE_DURATION, "default_sample_duration", "I"),
    (TFHD_DEFAULT_SAMPLE_SIZE, "default_sample_size", "I"),
    (TFHD_DEFAULT_SAMPLE_FLAGS, "default_sample_flags", "I"),
)
_TRUN_FIELDS = ((TRUN_DATA_OFFSET, "data_offset", "i"), (TRUN_FIRST_SAMPLE_FLAGS, "first_sample_flags", "I"))
_TRUN_ENTRY_FIELDS = (
    (TRUN_SAMPLE_DURATION, "duration", "I"),
    (TRUN_SAMPLE_SIZE, "size", "I"),
    (TRUN_SAMPLE_FLAGS, "flags", "I"),
    (TRUN_SAMPLE_COMPOSITION_TIME_OFFSET, "composition_offset", "I"),
)
_TRUN_ENTRY_NAMES = tuple(name for _, name, _ in _TRUN_ENTRY_FIELDS)
# Version 1: signed composition offsets, so B-frames may be presented before their decode time.
_TRUN_ENTRY_FIELDS_V1 = _TRUN_ENTRY_FIELDS[:3] + ((TRUN_SAMPLE_COMPOSITION_TIME_OFFSET, "composition_offset", "i"),)


# -- finding boxes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """Where one box sits in a buffer or file."""

    type: str
    offset: int  # of the box header in the containing buffer or file
    size: int  # whole box, header included
    header_size: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def payload_offset(self) -> int:
        return self.offset + self.header_size


def _box_at(data: bytes | bytearray | memoryview, pos: int, end: int) -> Box | None:
    """The box whose header starts at ``data[pos]``, if all of it lies before ``end`` (<= len(data))."""
    if pos + 8 > end:
        return None
    size, kind = _HEADER.unpack_from(data, pos)
    header = 8
    if size == 1:
        if pos + 16 > end:
            return None
        size = struct.unpack_from(">Q", data, pos + 8)[0]
        header = 16
    elif size == 0:  # to the end of the range (the last box of a file)
        size = end - pos
    if size < header or pos + size > end:
        return None
    return Box(kind.decode("latin-1"), pos, size, header)


def iter_boxes(data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Boxes laid end to end in ``data[start:end]``. Stops at a truncated box."""
    end = len(data) if end is None else min(end, len(data))
    pos = start
    while (found := _box_at(data, pos, end)) is not None:
        yield found
        pos = found.end


def find_box(data: bytes | bytearray | memoryview, path: str, start: int = 0, end: int | None = None) -> Box | None:
    """The first box at ``path`` ("moov/trak/mdia/mdhd") inside ``data[start:end]``."""
    first, _, rest = path.partition("/")
    for found in iter_boxes(data, start, end):
        if found.type == first:
            if not rest:
                return found
            return find_box(data, rest, found.payload_offset, found.end)
    return None


def find_boxes(data: bytes | bytearray | memoryview, kind: str, start: int = 0, end: int | None = None) -> list[Box]:
    """Every box of type ``kind`` directly inside ``data[start:end]``."""
    return [b for b in iter_boxes(data, start, end) if b.type == kind]


# -- building boxes ------------------------------------------------------------------------


def box(kind: bytes, *payload: bytes) -> bytes:
    """A box of type ``kind`` holding the payload pieces, in order."""
    body = b"".join(payload)
    return _HEADER.pack(8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A full box: version (8 bits) and flags (24 bits) before the payload."""
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _require(found: Box, need: int) -> None:
    """Refuse a box whose payload is shorter than the ``need`` bytes its fields take."""
    if found.payload_offset + need > found.end:
        raise ValueError(f"{found.type} box at {found.offset} is too short ({found.size} bytes) for its fields")


def _version_flags(data: bytes | bytearray | memoryview, found: Box, need: int) -> tuple[int, int]:
    """A full box's version and flags, once its payload is known to hold ``need`` bytes."""
    _require(found, need)
    p = found.payload_offset
    return data[p], int.from_bytes(data[p + 1:p + 4], "big")


def _layout(flags: int, fields: tuple[tuple[int, str, str], ...]) -> tuple[list[str], struct.Struct]:
    """The names and packed format of the optional fields ``flags`` make present."""
    present = [(name, fmt) for flag, name, fmt in fields if flags & flag]
    return [name for name, _ in present], struct.Struct(">" + "".join(fmt for _, fmt in present))


def _optional_fields(data: bytes | bytearray | memoryview, found: Box, at: int, flags: int,
                     fields: tuple[tuple[int, str, str], ...]) -> tuple[dict[str, int], int]:
    """The optional fields present at ``data[at]`` by name, and where they end."""
    names, layout = _layout(flags, fields)
    _require(found, at + layout.size - found.payload_offset)
    return dict(zip(names, layout.unpack_from(data, at))), at + layout.size


# -- mfhd ----------------------------------------------------------------------------------


def read_mfhd(data: bytes | bytearray | memoryview, mfhd: Box) -> tuple[int, int]:
    """An ``mfhd``'s sequence number and the offset of that field (to patch it)."""
    _require(mfhd, 8)
    at = mfhd.payload_offset + 4
    return struct.unpack_from(">I", data, at)[0], at


def mfhd_box(sequence: int) -> bytes:
    return full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))


# -- tfdt ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tfdt:
    """A track fragment's base media decode time, and where it sits (to patch it)."""

    version: int  # 1: 64-bit time, 0: 32-bit
    base_decode_time: int
    time_at: int

    def patch(self, data: bytearray, base_decode_time: int) -> bool:
        """Write a new base decode time in place; False when it does not fit a version 0 box."""
        if self.version == 1:
            struct.pack_into(">Q", data, self.time_at, base_decode_time)
        elif 0 <= base_decode_time < 1 << 32:
            struct.pack_into(">I", data, self.time_at, base_decode_time)
        else:
            return False
        return True


def read_tfdt(data: bytes | bytearray | memoryview, tfdt: Box) -> Tfdt:
    version, _flags = _version_flags(data, tfdt, 8)
    if version == 1:
        _require(tfdt, 12)
    at = tfdt.payload_offset + 4
    return Tfdt(version, struct.unpack_from(">Q" if version == 1 else ">I", data, at)[0], at)


def tfdt_box(base_decode_time: int) -> bytes:
    """A version 1 (64-bit) ``tfdt``."""
    return full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time))


# -- tfhd ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tfhd:
    """A track fragment header: the track and the defaults its runs fall back to.

    An absent optional field is ``None``. ``base_data_offset_at`` is where the explicit
    base data offset sits (``None`` without ``TFHD_BASE_DATA_OFFSET``), to patch it."""

    flags: int
    track_id: int
    base_data_offset: int | None = None
    sample_description_index: int | None = None
    default_sample_duration: int | None = None
    default_sample_size: int | None = None
    default_sample_flags: int | None = None
    base_data_offset_at: int | None = None


def read_tfhd(data: bytes | bytearray | memoryview, tfhd: Box) -> Tfhd:
    _version, flags = _version_flags(data, tfhd, 8)
    at = tfhd.payload_offset + 8
    fields, _end = _optional_fields(data, tfhd, at, flags, _TFHD_FIELDS)
    if flags & TFHD_BASE_DATA_OFFSET:
        fields["base_data_offset_at"] = at  # the first optional field
    return Tfhd(flags, struct.unpack_from(">I", data, tfhd.payload_offset + 4)[0], **fields)


def tfhd_box(track_id: int, flags: int = TFHD_DEFAULT_BASE_IS_MOOF) -> bytes:
    """A ``tfhd`` with no optional fields (the only kind our writers make): sample offsets
    relative to the moof by default, every sample's fields explicit in its trun."""
    if flags & ~(TFHD_DEFAULT_BASE_IS_MOOF | TFHD_DURATION_IS_EMPTY):
        raise ValueError(f"tfhd flags {flags:#08x} need fields this writer does not take")
    return full_box(b"tfhd", 0, flags, struct.pack(">I", track_id))


# -- trun ----------------------------------------------------------------------------------


class TrunEntry(NamedTuple):
    """One sample's entry in a ``trun``; an absent field is ``None`` (the tfhd/trex default
    applies). ``composition_offset`` is signed in a version 1 trun, 0 when absent."""

    duration: int | None
    size: int | None
    flags: int | None
    composition_offset: int


@dataclass(frozen=True)
class Trun:
    """A track run as stored: its fields and entries, and where they sit (to trim it)."""

    offset: int  # of the trun box
    end: int
    version: int
    flags: int
    data_offset: int | None  # relative to the tfhd's base; None when absent
    first_sample_flags: int | None
    entries: list[TrunEntry]
    count_at: int  # where sample_count sits
    entries_at: int  # where the first entry starts
    entry_size: int  # bytes per entry

    def sample_flags(self, i: int, default: int) -> int:
        """Sample ``i``'s flags: its own, else first_sample_flags for sample 0, else ``default``."""
        own = self.entries[i].flags
        if own is not None:
            return own
        if i == 0 and self.first_sample_flags is not None:
            return self.first_sample_flags
        return default

    def trim(self, data: bytearray, keep: int) -> None:
        """Keep only the first ``keep`` entries, size-neutral: ``sample_count`` shrinks and the
        unused entries become a ``free`` box after the trun when there is room for its header,
        else stay as trailing bytes of the trun (which parsers skip by box size)."""
        if keep >= len(self.entries):
            return
        struct.pack_into(">I", data, self.count_at, keep)
        used = self.entries_at + keep * self.entry_size
        spare = self.end - used
        if spare >= 8:
            struct.pack_into(">I", data, self.offset, used - self.offset)
            _HEADER.pack_into(data, used, spare, b"free")


def read_trun(data: bytes | bytearray | memoryview, trun: Box) -> Trun:
    version, flags = _version_flags(data, trun, 8)
    count_at = trun.payload_offset + 4
    count = struct.unpack_from(">I", data, count_at)[0]
    head, entries_at = _optional_fields(data, trun, count_at + 4, flags, _TRUN_FIELDS)
    names, entry = _layout(flags, _TRUN_ENTRY_FIELDS_V1 if version else _TRUN_ENTRY_FIELDS)
    if entries_at + count * entry.size > trun.end:
        raise ValueError(f"trun at {trun.offset} lists {count} samples but has room for fewer")
    # Each field's place in an unpacked entry, or None (absent: the defaults apply).
    dur_i, size_i, flags_i, cto_i = (names.index(n) if n in names else None for n in _TRUN_ENTRY_NAMES)
    entries = []
    for i in range(count):
        v = entry.unpack_from(data, entries_at + i * entry.size)
        entries.append(TrunEntry(None if dur_i is None else v[dur_i], None if size_i is None else v[size_i],
                                 None if flags_i is None else v[flags_i], 0 if cto_i is None else v[cto_i]))
    return Trun(trun.offset, trun.end, version, flags, head.get("data_offset"), head.get("first_sample_flags"),
                entries, count_at, entries_at, entry.size)


@dataclass(frozen=True)
class TrunSample:
    """One sample for ``trun_box``: every field explicit."""

    duration: int
    size: int
    flags: int
    composition_offset: int = 0


def trun_box(samples: Sequence[TrunSample], data_offset: int, version: int = 1) -> bytes:
    """A ``trun`` with a data offset and each sample's duration, size and flags; composition
    offsets too when any is non-zero (signed in version 1, so B-frames may lead their
    decode time; a version 0 trun cannot hold a negative one)."""
    with_cto = any(s.composition_offset for s in samples)
    flags = TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS
    if with_cto:
        flags |= TRUN_SAMPLE_COMPOSITION_TIME_OFFSET
        entry = struct.Struct(">IIIi" if version else ">IIII")
        entries = b"".join(entry.pack(s.duration, s.size, s.flags, s.composition_offset) for s in samples)
    else:
        entries = b"".join(struct.pack(">III", s.duration, s.size, s.flags) for s in samples)
    return full_box(b"trun", version, flags, struct.pack(">Ii", len(samples), data_offset), entries)
