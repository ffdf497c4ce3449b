"""``S3ObjectStore``: objects in an S3-compatible bucket (MinIO in production) via ``minio``.

The client is built with a short-timeout, few-retries ``urllib3`` pool so that an
unreachable endpoint fails in seconds: the uploader keeps segments in its spool
and retries later, which beats blocking a camera's pipeline for minutes.
Every failure to reach the store (connection refused, timeouts, 5xx, refused
credentials) is raised as ``ObjectStoreUnavailable`` naming the endpoint and
what to check, never the secret key.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import urllib3
from minio import Minio
from minio.helpers import check_bucket_name
from minio.error import InvalidResponseError, S3Error, ServerError

from storage.objects.store import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStoreUnavailable,
    check_key,
    check_prefix,
    check_range,
)

T = TypeVar("T")

MIN_PART_SIZE = 5 * 1024**2  # the S3 minimum for every part but the last
DEFAULT_PART_SIZE = 16 * 1024**2
SHA256_META = "sha256"  # sent as the x-amz-meta-sha256 header
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})
# What S3 servers answer when a bucket has no object lock configuration.
_NO_LOCK_CODES = frozenset(
    {"ObjectLockConfigurationNotFoundError", "ObjectLockConfigurationNotFound", "InvalidRequest"}
)
_CREDENTIAL_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
)


class S3ObjectStore:
    """An ``ObjectStore`` in one S3 bucket.

    The constructor does no network I/O, so a process can start while S3 is down;
    the bucket is created (if missing) on the first write or ``check()``.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str = "",
        part_size: int = DEFAULT_PART_SIZE,
        timeout_seconds: float = 5.0,
        retries: int = 2,
    ):
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size} is below the S3 minimum of {MIN_PART_SIZE} bytes")
        try:
            # Refuse a bad name now, with the setting to fix, not on the first upload.
            check_bucket_name(bucket, strict=True)  # what MinIO itself enforces
        except ValueError as exc:
            raise ValueError(
                f"SHARPEYES_S3_BUCKET {bucket!r}: {exc}; use 3-63 lower-case letters, digits, '.' or '-'"
            ) from None
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.part_size = part_size
        # Bounded: connect and read timeouts, a few retries with a small backoff,
        # also on 5xx (MinIO answers 503 while healing). Worst case is roughly
        # (retries + 1) * timeout for a dead endpoint.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds * 2),
            maxsize=10,
            retries=urllib3.Retry(
                total=retries,
                backoff_factor=0.2,
                status_forcelist=(500, 502, 503, 504),
                allowed_methods=None,  # PUTs of whole parts are safe to repeat
                raise_on_status=False,  # let minio parse the final error response
            ),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region or None,
            http_client=http,
        )
        self._bucket_ready = False
        self._object_lock: bool | None = None

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    # -- error mapping ------------------------------------------------------------

    def _call(self, action: str, key: str | None, fn: Callable[[], T]) -> T:
        """Run one client call, turning client errors into this module's errors."""
        where = f"S3 endpoint {self._scheme()}://{self.endpoint} (bucket {self.bucket!r})"
        what = f"{action} {key!r}" if key else action
        try:
            return fn()
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES and key is not None:
                raise ObjectNotFound(key) from None
            if exc.code in _CREDENTIAL_CODES:
                raise ObjectStoreUnavailable(
                    f"{where} refused to {what}: {exc.code}; check SHARPEYES_S3_ACCESS_KEY/"
                    "SHARPEYES_S3_SECRET_KEY and the bucket policy"
                ) from None
            if exc.code == "NoSuchBucket":
                self._bucket_ready = False
            raise ObjectStoreUnavailable(f"{where} refused to {what}: {exc.code}: {exc.message}") from None
        except (ServerError, InvalidResponseError) as exc:
            raise ObjectStoreUnavailable(
                f"{where} failed to {what}: {_short(exc)}; check the S3 server's health and logs"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ObjectStoreUnavailable(
                f"{where} is unreachable ({what}): {_short(exc)}; check SHARPEYES_S3_ENDPOINT, "
                "SHARPEYES_S3_SECURE, that the server is running and that the network allows the connection"
            ) from None

    def _scheme(self) -> str:
        return "https" if self.secure else "http"

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return

        def ensure() -> None:
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    # Another worker created it between our check and our create.
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        self._call("create the bucket", None, ensure)
        self._bucket_ready = True

    # -- writes -----------------------------------------------------------------

    def _already_there(self, key: str, size: int, sha256: str) -> bool:
        try:
            info = self.stat(key)
        except ObjectNotFound:
            return False
        return info.size == size and info.sha256 == sha256

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        """Upload ``path`` (multipart above ``part_size``) with its sha256 as user metadata;
        skipped when an object of the same size and recorded sha256 is already there."""
        check_key(key)
        size = Path(path).stat().st_size
        if self._already_there(key, size, sha256):
            return
        self._call(
            "upload",
            key,
            lambda: self._client.fput_object(
                self.bucket,
                key,
                str(path),
                metadata={SHA256_META: sha256},
                part_size=self.part_size,
                num_parallel_uploads=1,  # ingest uploads many segments at once already
            ),
        )

    def put_bytes(self, key: str, data: bytes, sha256: str) -> None:
        """Upload a small object; same idempotence as ``put_file``."""
        check_key(key)
        if self._already_there(key, len(data), sha256):
            return
        self._call(
            "upload",
            key,
            lambda: self._client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), metadata={SHA256_META: sha256}
            ),
        )

    def delete(self, key: str) -> None:
        """Remove ``key``; S3 reports success for a missing key too."""
        check_key(key)
        self._call("delete", key, lambda: self._client.remove_object(self.bucket, key))

    # -- legal hold ---------------------------------------------------------------

    def supports_legal_hold(self) -> bool:
        """Whether the bucket has S3 object lock (asked once, then remembered).

        Object lock can only be turned on when a bucket is created, so the answer
        does not change while we run.
        """
        if self._object_lock is None:
            self._ensure_bucket()

            def lock_enabled() -> bool:
                try:
                    config = self._client.get_object_lock_config(self.bucket)
                except S3Error as exc:
                    if exc.code in _NO_LOCK_CODES:
                        return False
                    raise
                return config is not None

            self._object_lock = self._call("read the object lock configuration", None, lock_enabled)
        return self._object_lock

    def set_legal_hold(self, key: str, on: bool) -> bool:
        """Turn the S3 legal hold on ``key`` on or off; False (and nothing done) when the
        bucket has no object lock. While on, S3 refuses to delete that object version,
        whoever asks: the index's hold is the policy, this is the enforcement."""
        check_key(key)
        if not self.supports_legal_hold():
            return False
        if on:
            self._call("set a legal hold on", key, lambda: self._client.enable_object_legal_hold(self.bucket, key))
        else:
            self._call(
                "release the legal hold on", key, lambda: self._client.disable_object_legal_hold(self.bucket, key)
            )
        return True

    def legal_hold(self, key: str) -> bool:
        """Whether S3 reports a legal hold on ``key`` (False when the bucket has no object lock)."""
        check_key(key)
        if not self.supports_legal_hold():
            return False
        return self._call(
            "read the legal hold of", key, lambda: self._client.is_object_legal_hold_enabled(self.bucket, key)
        )

    # -- reads ------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo:
        """Size and the ``x-amz-meta-sha256`` recorded at upload (None if absent)."""
        check_key(key)
        self._ensure_bucket()
        st = self._call("stat", key, lambda: self._client.stat_object(self.bucket, key))
        sha = None
        for name, value in (st.metadata or {}).items():
            if name.lower() == f"x-amz-meta-{SHA256_META}":
                sha = value
        return ObjectInfo(key=key, size=int(st.size or 0), sha256=sha)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` with one ranged GET."""
        return b"".join(self.iter_range(key, start, end, chunk=1 << 20))

    def iter_range(self, key: str, start: int, end: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """Stream bytes ``[start, end)`` with one ranged GET. The request is made at the
        call (so a missing key or a dead store raises here); the connection is always
        released, also when the consumer stops early."""
        check_key(key)
        check_range(start, end)
        self._ensure_bucket()
        if start == end:
            self.stat(key)  # same ObjectNotFound as a non-empty range
            return iter(())
        try:
            response = self._call(
                "read", key, lambda: self._client.get_object(self.bucket, key, offset=start, length=end - start)
            )
        except ObjectStoreUnavailable as exc:
            # S3 answers 416 InvalidRange when start is at or past the end.
            if "InvalidRange" in str(exc):
                return iter(())
            raise
        return self._stream(key, response, chunk)

    def _stream(self, key: str, response, chunk: int) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        try:
            while True:
                data = self._call("read", key, lambda: response.read(chunk))
                if not data:
                    return
                yield data
        finally:
            response.close()
            response.release_conn()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order; ``sha256`` is None (listings carry no
        user metadata; ``stat`` a key to get it)."""
        check_prefix(prefix)
        self._ensure_bucket()

        def objects() -> list[ObjectInfo]:
            # Materialised inside _call so that errors while paging are mapped too.
            return [
                ObjectInfo(key=o.object_name, size=int(o.size or 0), sha256=None)
                for o in self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
                if o.object_name and not o.is_dir
            ]

        return iter(self._call("list", prefix or None, objects))

    def presigned_get(self, key: str, expires_seconds: int = 3600) -> str | None:
        """A time-limited URL for a plain GET of ``key`` (signed locally, no request)."""
        check_key(key)
        return self._call(
            "sign a URL for",
            key,
            lambda: self._client.presigned_get_object(self.bucket, key, expires=timedelta(seconds=expires_seconds)),
        )

    def check(self) -> None:
        """Reach the endpoint and make sure the bucket exists (creating it if missing)."""
        self._bucket_ready = False
        self._ensure_bucket()


def _short(exc: BaseException) -> str:
    """The last, most specific line of an exception message (urllib3's are long)."""
    text = str(exc).strip() or type(exc).__name__
    reason = getattr(exc, "reason", None)
    if reason is not None:
        text = str(reason)
    return text.splitlines()[-1][:300]
