"""``Uploader``: moves closed segments from the spool to the object store and the index.

Order per segment: store the object (idempotent, checked by sha256), write the
index row, then delete the spool files. A crash between any two steps repeats
the step harmlessly on restart, so no row ever points at a missing object and
no object stays without its row once the spool is drained.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from prometheus_client import Counter

from storage.index.segments import Claim, Fence, FencedOut, SegmentIndex, SegmentRecord
from storage.index.keyframes import pack_keyframes
from storage.mp4.read import init_segment_size
from storage.objects.store import ObjectStore, ObjectStoreUnavailable
from storage.objects.open import segment_key
from ingest.recording.pieces import Piece, split_by_claims
from ingest.recording.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)

SEGMENTS_QUARANTINED = Counter(
    "sharpeyes_segments_quarantined_total",
    "Pieces of segments not indexed because their time was already claimed, kept under quarantine/.",
    ["reason"],
)
QUARANTINED_SECONDS = Counter(
    "sharpeyes_quarantined_seconds_total",
    "Seconds of video kept under quarantine/ instead of indexed (time fencing).",
    ["reason"],
)
# Where refused video goes: outside every camera's prefix, so retention rules leave it alone.
QUARANTINE_PREFIX = "quarantine/"

# Seconds to wait after a failed upload, growing while the store stays down.
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Uploader:
    """One background thread draining the spool in time order."""

    def __init__(
        self,
        spool: Spool,
        store: ObjectStore,
        index: SegmentIndex,
        *,
        on_stored: Callable[[SpoolEntry], None] = lambda e: None,
        on_dropped: Callable[[SpoolEntry], None] = lambda e: None,
        quota_policy: str = "drop-oldest-unuploaded",
        fence: Callable[[SpoolEntry], Fence | None] | None = None,
    ):
        self.spool = spool
        self.store = store
        self.index = index
        self.on_stored = on_stored
        self.on_dropped = on_dropped
        self.quota_policy = quota_policy
        # With leases: the (worker, epoch) a segment must still hold to be indexed.
        self.fence = fence
        self.fenced = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.uploaded = 0
        self.failures = 0
        self.dropped = 0  # segments lost to the spool quota (each is a storage_unavailable gap)
        self.last_error = ""
        self.store_available = True
        self.last_latency_s = 0.0
        self.latency_sum_s = 0.0
        self.uploaded_bytes = 0
        # The segment being uploaded: the quota never drops it from under the upload.
        self._busy: tuple[str, str, int] | None = None
        self._quota_lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="uploader", daemon=True)
        self._thread.start()

    def notify(self, _entry: SpoolEntry | None = None) -> None:
        """A segment was closed: enforce the quota (the store may be up but slower than the
        cameras, so this cannot wait for an upload to fail) and look at the spool now."""
        try:
            self.enforce_quota()
        except Exception:  # noqa: BLE001 - the caller is a camera session; never stop it
            log.exception("spool quota check failed")
        self._wake.set()

    def close(self, drain_timeout: float = 10.0) -> int:
        """Upload what is in the spool for up to ``drain_timeout`` seconds, then stop.
        Returns how many segments are still waiting (they stay in the spool for next start)."""
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline and self.spool.closed_entries() and self.store_available:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
        return len(self.spool.closed_entries())

    # -- work -----------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.enforce_quota()
                done = self.drain_once()
                failures = 0
                self.store_available = True
            except ObjectStoreUnavailable as exc:
                self.store_available = False
                self.failures += 1
                self.last_error = str(exc)
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("upload failed, retrying in %.0f s: %s", delay, exc)
                self.enforce_quota()
                self._wake.wait(delay)
                self._wake.clear()
                continue
            except Exception:  # noqa: BLE001 - keep draining; the spool keeps the data
                self.failures += 1
                log.exception("upload failed unexpectedly; retrying in 5 s")
                self._wake.wait(5.0)
                self._wake.clear()
                continue
            if not done:
                self._wake.wait(1.0)
                self._wake.clear()

    def drain_once(self) -> int:
        """Upload every closed segment now in the spool; returns how many."""
        n = 0
        for entry in self.spool.closed_entries():
            if self._stop.is_set() and n:
                break
            key = (entry.camera_id, entry.stream, entry.start_us)
            with self._quota_lock:
                if not self.spool.media_path(entry).exists():
                    continue  # dropped by the quota since the listing
                self._busy = key
            try:
                self.upload(entry)
            finally:
                with self._quota_lock:
                    self._busy = None
            n += 1
        return n

    def upload(self, entry: SpoolEntry) -> None:
        """Store and index one closed segment, then remove it from the spool.

        Fencing is by time (``SegmentIndex.add_segment``): a segment whose time is
        partly claimed (another row has it, or a newer lease owner records it) is
        cut at GOP boundaries; the free parts are indexed as segments of their own
        and the claimed parts are stored under ``quarantine/`` with a row in the
        ``quarantine`` table saying why. Nothing recorded is deleted."""
        path = self.spool.media_path(entry)
        started = time.monotonic()
        sha = entry.sha256 or file_sha256(path)
        size = path.stat().st_size
        assert entry.end_us is not None
        key = segment_key(entry.camera_id, entry.stream, entry.start_us, (entry.end_us - entry.start_us) // 1000)
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
        init = head[:init_segment_size(head)]
        fence = self._fence_for(entry)
        stored_whole = False
        if self.index.references(entry.camera_id, entry.stream, entry.start_us, key):
            claims = []  # indexed already (a crash came between the row and the spool delete)
        else:
            claims = self.index.claims(entry.camera_id, entry.stream, entry.start_us, entry.end_us, fence)
        if not claims:
            self.store.put_file(key, path, sha)
            stored_whole = True
            try:
                self.index.add_segment(self._record(entry, entry.start_us, entry.end_us, key, size, sha, init,
                                                    pack_keyframes(entry.keyframe_table())), fence=fence)
            except FencedOut as exc:  # claimed between the plan and the insert
                claims = exc.claims
        if claims:
            self._upload_pieces(entry, path, init, fence, claims)
            if stored_whole:
                # Stored whole before the claim appeared: its bytes are in the pieces now.
                self._delete_duplicate(entry, key)
        self.spool.discard(entry)
        self.uploaded += 1
        self.uploaded_bytes += size
        self.last_latency_s = time.monotonic() - started
        self.latency_sum_s += self.last_latency_s
        self.on_stored(entry)

    def _record(self, entry: SpoolEntry, start_us: int, end_us: int, key: str, size: int, sha: str,
                init: bytes, keyframes: bytes) -> SegmentRecord:
        return SegmentRecord(
            camera_id=entry.camera_id, stream=entry.stream, start_us=start_us, end_us=end_us, object_key=key,
            bytes=size, codec=entry.codec, width=entry.width, height=entry.height, audio_codec=entry.audio_codec,
            sha256=sha, init_sha256=hashlib.sha256(init).hexdigest(), init_data=init, keyframes=keyframes,
            drift_us=entry.drift_us, worker_id=entry.worker_id, origin=entry.origin,
        )

    def _upload_pieces(self, entry: SpoolEntry, path: Path, init: bytes, fence: Fence | None,
                       claims: list[Claim]) -> None:
        assert entry.end_us is not None
        for piece in split_by_claims(path.read_bytes(), len(init), entry.start_us, entry.end_us, claims):
            duration_ms = (piece.end_us - piece.start_us) // 1000
            key = segment_key(entry.camera_id, entry.stream, piece.start_us, duration_ms)
            sha = piece.sha256
            if not piece.claimed:
                self.store.put_bytes(key, piece.data, sha)
                try:
                    self.index.add_segment(self._record(entry, piece.start_us, piece.end_us, key, len(piece.data),
                                                        sha, init, pack_keyframes(piece.keyframes)), fence=fence)
                    log.warning("camera %s/%s: indexed the unclaimed part [%d, %d) of the segment at %d",
                                entry.camera_id, entry.stream, piece.start_us, piece.end_us, entry.start_us)
                    continue
                except FencedOut as exc:
                    piece = replace(piece, claimed=exc.claims)
                self._delete_duplicate(entry, key)
            self._quarantine(entry, piece, fence)

    def _quarantine(self, entry: SpoolEntry, piece: Piece, fence: Fence | None) -> None:
        """Keep a refused piece under ``quarantine/``, with a row, a metric and a log line that say why."""
        key = QUARANTINE_PREFIX + segment_key(entry.camera_id, entry.stream, piece.start_us,
                                              (piece.end_us - piece.start_us) // 1000)
        sha = piece.sha256
        self.store.put_bytes(key, piece.data, sha)
        reason = "taken_over" if any(c.reason == "taken_over" for c in piece.claimed) else "indexed"
        detail = "; ".join(f"[{c.start_us}, {c.end_us}) {c.detail}" for c in piece.claimed)
        self.index.add_quarantine(entry.camera_id, entry.stream, piece.start_us, piece.end_us, object_key=key,
                                  sha256=sha, size=len(piece.data), worker_id=entry.worker_id,
                                  epoch=entry.lease_epoch, reason=reason, detail=detail)
        self.fenced += 1
        SEGMENTS_QUARANTINED.labels(reason).inc()
        QUARANTINED_SECONDS.labels(reason).inc((piece.end_us - piece.start_us) / 1e6)
        log.error("camera %s/%s: [%d, %d) of the segment at %d was already claimed (%s): not indexed, kept as %s",
                  entry.camera_id, entry.stream, piece.start_us, piece.end_us, entry.start_us, detail, key)

    def _delete_duplicate(self, entry: SpoolEntry, key: str) -> None:
        """Remove an unindexed object whose bytes are held elsewhere (an indexed piece or quarantine)."""
        try:
            if not self.index.references(entry.camera_id, entry.stream, entry.start_us, key):
                self.store.delete(key)
        except Exception:  # noqa: BLE001 - an orphan object is harmless; retention lists it
            log.exception("camera %s: could not delete the duplicate object %s", entry.camera_id, key)

    def _fence_for(self, entry: SpoolEntry) -> Fence | None:
        """The (worker, epoch) the segment was recorded under, if it says; else the
        current one. That worker may since have lost the camera (or died, and this
        worker adopted its spool): the index then indexes what precedes the takeover."""
        if self.fence is None:
            return None
        current = self.fence(entry)
        if entry.lease_epoch is None or current is None:
            return current
        return (entry.worker_id or current[0], entry.lease_epoch)

    def enforce_quota(self) -> None:
        """Keep the spool under its quota with ``drop-oldest-unuploaded``: the oldest
        closed segment not being uploaded goes, and ``on_dropped`` records the loss.
        Safe from any thread. (``stop-recording`` is enforced by the segmenters.)"""
        if self.quota_policy != "drop-oldest-unuploaded":
            return
        while self.spool.over_quota():
            with self._quota_lock:
                dropped = self.spool.drop_oldest(keep=self._busy)
            if dropped is None:
                return
            self.dropped += 1
            log.error("spool over quota (%d bytes): dropped %s/%s segment at %d, never uploaded",
                      self.spool.quota_bytes, dropped.camera_id, dropped.stream, dropped.start_us)
            self.on_dropped(dropped)
