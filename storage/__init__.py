"""Object stores, the segment index and registry (SQLAlchemy + Alembic), keyframe tables."""

from storage.db.engine import open_engine
from storage.index.camera_status import CameraStatusTable
from storage.index.segments import Fence, FencedOut, SegmentIndex, SegmentRecord
from storage.index.leases import Lease, LeaseTable, WorkerInfo
from storage.index.keyframes import Keyframe, pack_keyframes, unpack_keyframes
from storage.objects.local import LocalObjectStore
from storage.objects.store import (
    InvalidObjectKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreUnavailable,
    check_key,
)
from storage.index.registry import Registry, RegistryError
from storage.objects.s3 import S3ObjectStore
from storage.index.credentials import SecretCipher, SecretKeyError, load_cipher, public_camera_dict
from storage.objects.open import open_object_store, segment_key

__all__ = [
    "CameraStatusTable",
    "Fence",
    "FencedOut",
    "Lease",
    "LeaseTable",
    "WorkerInfo",
    "InvalidObjectKey",
    "SecretCipher",
    "SecretKeyError",
    "load_cipher",
    "public_camera_dict",
    "Keyframe",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreUnavailable",
    "Registry",
    "RegistryError",
    "S3ObjectStore",
    "SegmentIndex",
    "SegmentRecord",
    "check_key",
    "open_engine",
    "open_object_store",
    "pack_keyframes",
    "segment_key",
    "unpack_keyframes",
]
