"""Anchoring the audit chain where the database's owner cannot rewrite it.

The hash chain of ``streams.access.audit`` shows an altered or removed row, but whoever can
write the database can also delete the newest rows, or rewrite a row and recompute every
hash after it, and the chain still holds. So the head is anchored outside the database:

- A **checkpoint** is a statement "the chain had ``count`` rows, ending at row ``audit_id``
  with ``hash``, and these are the hashes of the rows since the previous checkpoint",
  signed with an Ed25519 key kept outside the database (``audit_key_file``).
- Each checkpoint is written to the ``audit_checkpoints`` table and, as a JSON object, to the
  object store under ``audit/anchors/`` with a legal hold (S3 object lock, where the bucket
  has it, keeps even the bucket's owner from deleting it until the lock is lifted).
- Every export manifest carries the checkpoint made when it was exported.

``verify_anchored`` (``sharpeyes audit verify``) walks the chain and checks it against every
anchor it is given: a row missing, a row rewritten (its hash is not the signed one) or the
newest rows removed (the chain ends before the newest anchor) are each named, by the first
bad row or by the missing range of ids. Rows written after the newest anchor can still be
removed unnoticed: anchors are made every ``audit_checkpoint_seconds``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import sessionmaker

from config.times import iso_utc, now_us
from storage.db.schema import AuditCheckpointRow, AuditRow
from storage.evidence.signing import key_id, load_key_file
from storage.objects.store import ObjectNotFound, ObjectStore, ObjectStoreUnavailable
from streams.access.audit import GENESIS, AuditLog, row_hash

log = logging.getLogger(__name__)

ANCHOR_PREFIX = "audit/anchors/"
KEY_FILE = "audit_signing_key.pem"


def audit_key_path(data_dir: Path, configured: Path | None = None) -> Path:
    return Path(configured) if configured is not None else Path(data_dir) / KEY_FILE


def _statement(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Checkpoint:
    """A signed head of the audit chain (``hashes``: the rows since the previous checkpoint)."""

    audit_id: int
    count: int
    hash: str
    time_us: int
    key_id: str
    signature: str
    # The rows since the previous checkpoint (after ``after_id``), signed on their own: kept in
    # the object store's copy, so a verifier can name the exact row that was rewritten.
    after_id: int = 0
    hashes: tuple[str, ...] = ()
    hashes_signature: str = ""

    def body(self) -> dict[str, Any]:
        """What ``signature`` covers (the head; the database row holds exactly this)."""
        return {"v": 1, "audit_id": self.audit_id, "count": self.count, "hash": self.hash, "time_us": self.time_us,
                "key_id": self.key_id}

    def hashes_body(self) -> dict[str, Any]:
        """What ``hashes_signature`` covers."""
        return {"v": 1, "audit_id": self.audit_id, "after_id": self.after_id, "hashes": list(self.hashes)}

    def as_dict(self) -> dict[str, Any]:
        return {**self.body(), "time": iso_utc(self.time_us), "signature": self.signature,
                "after_id": self.after_id, "hashes": list(self.hashes), "hashes_signature": self.hashes_signature}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Checkpoint":
        return cls(int(d["audit_id"]), int(d["count"]), str(d["hash"]), int(d["time_us"]), str(d["key_id"]),
                   str(d["signature"]), int(d.get("after_id", 0)), tuple(d.get("hashes", ())),
                   str(d.get("hashes_signature", "")))

    def signed_by(self, public_key: Ed25519PublicKey) -> bool:
        try:
            public_key.verify(bytes.fromhex(self.signature), _statement(self.body()))
            if self.hashes:
                public_key.verify(bytes.fromhex(self.hashes_signature), _statement(self.hashes_body()))
        except (InvalidSignature, ValueError):
            return False
        return True


class AuditAnchor:
    """Makes signed checkpoints of the audit head and anchors them in the object store."""

    def __init__(self, engine: Engine, key: Ed25519PrivateKey, store: ObjectStore | None = None) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.key = key
        self.key_id = key_id(key.public_key())
        self.store = store

    @classmethod
    def open(cls, engine: Engine, data_dir: Path, configured: Path | None, store: ObjectStore | None) -> "AuditAnchor":
        return cls(engine, load_key_file(audit_key_path(data_dir, configured)), store)

    def latest(self) -> Checkpoint | None:
        with self._sessions() as s:
            row = s.scalar(select(AuditCheckpointRow).order_by(AuditCheckpointRow.id.desc()).limit(1))
            return None if row is None else Checkpoint(row.audit_id, row.count, row.hash, row.time_us, row.key_id,
                                                       row.signature)

    def checkpoint(self, *, force: bool = False) -> Checkpoint | None:
        """Sign the current head (None when the chain is empty, or unchanged and not ``force``)."""
        previous = self.latest()
        after = previous.audit_id if previous is not None else 0
        with self._sessions() as s:
            head = s.execute(select(AuditRow.id, AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)).first()
            if head is None or (not force and previous is not None and head.id == previous.audit_id):
                return None
            count = s.scalar(select(func.count()).select_from(AuditRow).where(AuditRow.id <= head.id)) or 0
            hashes = tuple(s.scalars(select(AuditRow.hash).where(AuditRow.id > after, AuditRow.id <= head.id)
                                     .order_by(AuditRow.id)))
        unsigned = Checkpoint(head.id, count, head.hash, now_us(), self.key_id, "", after, hashes)
        cp = Checkpoint(head.id, count, head.hash, unsigned.time_us, self.key_id,
                        self.key.sign(_statement(unsigned.body())).hex(), after, hashes,
                        self.key.sign(_statement(unsigned.hashes_body())).hex())
        with self._sessions() as s, s.begin():
            s.add(AuditCheckpointRow(audit_id=cp.audit_id, count=cp.count, hash=cp.hash, time_us=cp.time_us,
                                     key_id=cp.key_id, signature=cp.signature))
        self._anchor(cp)
        return cp

    def _anchor(self, cp: Checkpoint) -> None:
        if self.store is None:
            return
        key = f"{ANCHOR_PREFIX}{cp.audit_id:012d}-{cp.time_us}.json"
        data = json.dumps(cp.as_dict(), sort_keys=True).encode()
        try:
            self.store.put_bytes(key, data, hashlib.sha256(data).hexdigest())
            setter = getattr(self.store, "set_legal_hold", None)
            if setter is not None:
                setter(key, True)  # S3 object lock where the bucket has it; a no-op elsewhere
        except ObjectStoreUnavailable as exc:
            log.warning("audit checkpoint %d not anchored in the object store: %s; it is in the database and the "
                        "next checkpoint anchors again", cp.audit_id, exc)

    def database_checkpoints(self) -> list[Checkpoint]:
        with self._sessions() as s:
            return [Checkpoint(r.audit_id, r.count, r.hash, r.time_us, r.key_id, r.signature)
                    for r in s.scalars(select(AuditCheckpointRow).order_by(AuditCheckpointRow.id))]


def stored_anchors(store: ObjectStore) -> list[Checkpoint]:
    """Every checkpoint anchored in the object store, oldest first."""
    out = []
    for info in store.list(ANCHOR_PREFIX):
        try:
            data = store.get_range(info.key, 0, info.size)
            out.append(Checkpoint.from_dict(json.loads(data)))
        except (ObjectNotFound, ValueError, KeyError, TypeError) as exc:
            log.warning("audit anchor %s is unreadable: %s", info.key, exc)
    return out


@dataclass(frozen=True)
class AnchoredResult:
    """What ``verify_anchored`` found: ``bad_row_id`` or ``missing`` (first and last missing id)."""

    ok: bool
    rows_checked: int
    anchors_checked: int
    bad_row_id: int | None = None
    missing: tuple[int, int] | None = None
    reason: str = ""


def verify_anchored(engine: Engine, audit: AuditLog, anchors: Iterable[Checkpoint],
                    public_key: Ed25519PublicKey) -> AnchoredResult:
    """The chain's own check, then every anchor against it (see the module docstring)."""
    good: dict[int, Checkpoint] = {}
    forged = 0
    for cp in anchors:
        if cp.signed_by(public_key):
            if cp.audit_id not in good or len(cp.hashes) > len(good[cp.audit_id].hashes):
                good[cp.audit_id] = cp
        else:
            forged += 1
    if forged:
        return AnchoredResult(False, 0, 0, reason=f"{forged} checkpoint(s) carry no valid signature of this key: "
                                                  "they were forged or altered")
    sessions = sessionmaker(engine)
    with sessions() as s:
        rows = {r.id: r for r in s.scalars(select(AuditRow).order_by(AuditRow.id))}
    ids = sorted(rows)
    # 1. The rows as anchored: a signed hash list names the first rewritten row exactly.
    for cp in sorted(good.values(), key=lambda c: c.audit_id):
        if cp.hashes:
            span = [i for i in ids if cp.after_id < i <= cp.audit_id]
            for position, expected in enumerate(cp.hashes):
                if position >= len(span):
                    first_missing = span[-1] + 1 if span else cp.after_id + 1
                    return AnchoredResult(False, len(ids), len(good), missing=(first_missing, cp.audit_id),
                                          reason=f"rows {first_missing}..{cp.audit_id} are missing: the checkpoint of "
                                                 f"{iso_utc(cp.time_us)} signed {len(cp.hashes)} rows after "
                                                 f"{cp.after_id}, the database has {len(span)}")
                row = rows[span[position]]
                if row.hash != expected:
                    if row.id != cp.after_id + 1 + position:
                        lo = cp.after_id + 1 + position
                        return AnchoredResult(False, len(ids), len(good), missing=(lo, row.id - 1),
                                              reason=f"rows {lo}..{row.id - 1} are missing (deleted)")
                    return AnchoredResult(False, len(ids), len(good), bad_row_id=row.id,
                                          reason=f"row {row.id} is not the row the checkpoint of "
                                                 f"{iso_utc(cp.time_us)} signed: it was rewritten")
    # 2. The chain itself.
    expected_prev = GENESIS
    for n, i in enumerate(ids):
        row = rows[i]
        if row.prev_hash != expected_prev:
            lo = ids[n - 1] + 1 if n else 1
            missing = (lo, i - 1) if i - 1 >= lo else None
            return AnchoredResult(False, n, len(good), bad_row_id=None if missing else i, missing=missing,
                                  reason=(f"rows {lo}..{i - 1} are missing" if missing else
                                          f"row {i}'s prev_hash does not match the row before: altered"))
        fields = {k: getattr(row, k) for k in ("time_us", "user", "role", "client_ip", "action", "camera_id",
                                               "range_start_us", "range_end_us", "outcome", "detail")}
        if row_hash(row.prev_hash, fields) != row.hash:
            return AnchoredResult(False, n, len(good), bad_row_id=i, reason=f"row {i}'s content does not match its "
                                                                            "hash: it was altered")
        expected_prev = row.hash
    # 3. Heads: every anchor's row must be there with its signed hash (catches truncation).
    last = ids[-1] if ids else 0
    for cp in sorted(good.values(), key=lambda c: c.audit_id):
        if cp.audit_id > last:
            return AnchoredResult(False, len(ids), len(good), missing=(last + 1, cp.audit_id),
                                  reason=f"rows {last + 1}..{cp.audit_id} are missing: the chain ends at {last} but "
                                         f"the checkpoint of {iso_utc(cp.time_us)} signed it up to {cp.audit_id} "
                                         "(the newest rows were removed)")
        if rows.get(cp.audit_id) is None or rows[cp.audit_id].hash != cp.hash:
            return AnchoredResult(False, len(ids), len(good), bad_row_id=cp.audit_id,
                                  reason=f"row {cp.audit_id} does not carry the hash its checkpoint signed: rows up "
                                         "to it were rewritten and re-hashed")
        if len([i for i in ids if i <= cp.audit_id]) != cp.count:
            return AnchoredResult(False, len(ids), len(good),
                                  reason=f"the chain has a different number of rows up to {cp.audit_id} than its "
                                         f"checkpoint signed ({cp.count}): rows were removed and the chain rebuilt")
    return AnchoredResult(True, len(ids), len(good))


__all__ = ["AnchoredResult", "AuditAnchor", "Checkpoint", "audit_key_path", "stored_anchors", "verify_anchored"]
