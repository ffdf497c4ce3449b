"""Object stores, the segment index and registry (SQLAlchemy + Alembic), keyframe tables."""

from storage.audit import AuditLog, VerifyResult
from storage.database import open_engine
from storage.camera_status import CameraStatusTable
from storage.index import Fence, FencedOut, SegmentIndex, SegmentRecord, now_us
from storage.leases import Lease, LeaseTable, WorkerInfo
from storage.keyframes import Keyframe, pack_keyframes, unpack_keyframes
from storage.local import LocalObjectStore
from storage.objects import (
    InvalidObjectKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreUnavailable,
    check_key,
)
from storage.registry import Registry, RegistryError
from storage.s3 import S3ObjectStore
from storage.secrets import SecretCipher, SecretKeyError, load_cipher, public_camera_dict
from storage.stores import open_object_store, segment_key
from storage.users import ROLES, ApiKey, User, UserError, UserStore, ensure_first_admin

__all__ = [
    "CameraStatusTable",
    "Fence",
    "FencedOut",
    "Lease",
    "LeaseTable",
    "WorkerInfo",
    "InvalidObjectKey",
    "ROLES",
    "ApiKey",
    "AuditLog",
    "SecretCipher",
    "SecretKeyError",
    "User",
    "UserError",
    "UserStore",
    "VerifyResult",
    "ensure_first_admin",
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
    "now_us",
    "open_engine",
    "open_object_store",
    "pack_keyframes",
    "segment_key",
    "unpack_keyframes",
]
