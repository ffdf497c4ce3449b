"""Object stores, the segment index and registry (SQLAlchemy + Alembic), keyframe tables."""

from storage.database import open_engine
from storage.index import SegmentIndex, SegmentRecord, now_us
from storage.keyframes import Keyframe, pack_keyframes, unpack_keyframes
from storage.objects import ObjectInfo, ObjectNotFound, ObjectStore, ObjectStoreUnavailable
from storage.registry import Registry, RegistryError

__all__ = [
    "Keyframe",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreUnavailable",
    "Registry",
    "RegistryError",
    "SegmentIndex",
    "SegmentRecord",
    "now_us",
    "open_engine",
    "pack_keyframes",
    "unpack_keyframes",
]
