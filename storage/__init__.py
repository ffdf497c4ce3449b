"""Object stores, the segment index and registry (SQLAlchemy + Alembic), keyframe tables."""

from storage.audit import AuditLog, VerifyResult
from storage.database import open_engine
from storage.index import SegmentIndex, SegmentRecord, now_us
from storage.keyframes import Keyframe, pack_keyframes, unpack_keyframes
from storage.objects import ObjectInfo, ObjectNotFound, ObjectStore, ObjectStoreUnavailable
from storage.registry import Registry, RegistryError
from storage.secrets import SecretCipher, SecretKeyError, load_cipher, public_camera_dict
from storage.users import ROLES, ApiKey, User, UserError, UserStore, ensure_first_admin

__all__ = [
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
