"""``AuditLog``: the append-only record of who viewed, exported or changed what.

Each row carries ``prev_hash`` (the ``hash`` of the row before; 64 zeros for the
first) and ``hash = sha256(prev_hash || canonical(row))``, where ``canonical`` is
compact, key-sorted JSON of every field except the database id. Altering or
deleting any row breaks the chain at that row or the next, which ``verify``
reports. Deleting rows at the *end* leaves a valid shorter chain: detect that by
keeping the latest ``head()`` hash somewhere else (an export, a signed manifest).

Nothing here updates or deletes rows, and no API route does either.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import Callable, TextIO

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from config.redact import redact_text
from config.times import now_us
from storage.db.schema import AuditRow

GENESIS = "0" * 64

# The list. A new kind of access gets a name here first, so a typo in
# a route cannot invent an action that no report filters for.
ACTIONS: tuple[str, ...] = (
    "live_start",
    "live_stop",
    "playback",
    "snapshot",
    "export",
    "hold",
    "camera_add",
    "camera_edit",
    "camera_remove",
    "region_add",
    "region_edit",
    "region_remove",
    "user_add",
    "user_passwd",
    "user_disable",
    "user_enable",
    "user_role",
    "key_create",
    "key_revoke",
    "sign_in",
    "sign_in_failed",
    "token_refresh",
    "motion_search",
    "hold_release",
    "sign_out",
    "probe",
    "camera_import",
    "audit_checkpoint",
    # GB/T 28181: a device's REGISTER (ok or denied), operators adding/removing devices.
    "gb_register",
    "gb_device_add",
    "gb_device_remove",
    "gb_device_refresh",
    # GB/T 28181 media: a device's own recordings listed (RecordInfo), downloaded into our archive.
    "gb_records",
    "gb_backfill",
    # GB/T 28181 cascade: an upper platform's INVITE of one of our cameras (accepted, refused, ended).
    "gb_cascade",
    # PTZ of a GB/T 28181 channel (POST /api/cameras/{id}/ptz).
    "ptz",
)
OUTCOMES: tuple[str, ...] = ("ok", "denied", "failed", "rate_limited")
CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "time_us",
    "user",
    "role",
    "client_ip",
    "action",
    "camera_id",
    "range_start_us",
    "range_end_us",
    "outcome",
    "detail",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True)
class AuditEntry:
    """One audit row as read back."""

    id: int
    time_us: int
    user: str
    role: str
    client_ip: str
    action: str
    camera_id: str | None
    range_start_us: int | None
    range_end_us: int | None
    outcome: str
    detail: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    """What ``AuditLog.verify`` found. ``bad_row_id`` is the first row that breaks the chain."""

    ok: bool
    rows_checked: int
    bad_row_id: int | None = None
    reason: str = ""


def canonical(fields: dict[str, object]) -> bytes:
    """The bytes a row's hash covers: compact, key-sorted JSON (UTF-8)."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(prev_hash: str, fields: dict[str, object]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(fields)).hexdigest()


def _hashed_fields(row: AuditRow) -> dict[str, object]:
    return {
        "time_us": row.time_us,
        "user": row.user,
        "role": row.role,
        "client_ip": row.client_ip,
        "action": row.action,
        "camera_id": row.camera_id,
        "range_start_us": row.range_start_us,
        "range_end_us": row.range_end_us,
        "outcome": row.outcome,
        "detail": row.detail,
    }


class AuditLog:
    """Appends and reads audit rows. Safe across threads and processes (see ``append``)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], int] = now_us):
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    def append(
        self,
        *,
        user: str,
        role: str,
        client_ip: str,
        action: str,
        outcome: str = "ok",
        camera_id: str | None = None,
        range_start_us: int | None = None,
        range_end_us: int | None = None,
        detail: str = "",
    ) -> AuditEntry:
        """Write one row at the end of the chain and return it.

        ``detail`` is passed through ``redact_text`` so a URL with credentials
        cannot land in the table. Concurrent writers (threads, processes, API
        nodes) race on the unique ``prev_hash``; the loser re-reads the head and
        tries again.
        """
        if action not in ACTIONS:
            raise ValueError(f"audit action {action!r} is unknown: add it to streams.access.audit.ACTIONS")
        if outcome not in OUTCOMES:
            raise ValueError(f"audit outcome {outcome!r} is unknown: use one of {', '.join(OUTCOMES)}")
        for _attempt in range(50):
            with self._sessions() as s:
                try:
                    with s.begin():
                        prev = s.scalar(select(AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)) or GENESIS
                        row = AuditRow(
                            time_us=self._clock(),
                            user=user[:64],
                            role=role[:16],
                            client_ip=client_ip[:64],
                            action=action,
                            camera_id=camera_id,
                            range_start_us=range_start_us,
                            range_end_us=range_end_us,
                            outcome=outcome,
                            detail=redact_text(detail),
                            prev_hash=prev,
                            hash="",
                        )
                        row.hash = row_hash(prev, _hashed_fields(row))
                        s.add(row)
                        s.flush()
                        return _entry(row)
                except IntegrityError:
                    continue  # another writer took this predecessor; chain onto theirs
                except OperationalError as exc:
                    # SQLite refuses to upgrade a stale read to a write (WAL
                    # "busy snapshot"); the retry reads the new head.
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    continue
        raise RuntimeError("could not append to the audit log after 50 tries: is the database overloaded?")

    def head(self) -> str:
        """The hash of the newest row (``GENESIS`` when empty): keep it elsewhere to detect truncation."""
        with self._sessions() as s:
            return s.scalar(select(AuditRow.hash).order_by(AuditRow.id.desc()).limit(1)) or GENESIS

    def verify(self, batch: int = 5000) -> VerifyResult:
        """Walk the chain in id order; report the first row whose links or hash do not hold."""
        expected_prev = GENESIS
        checked = 0
        last_id = 0
        with self._sessions() as s:
            while True:
                rows = list(
                    s.scalars(select(AuditRow).where(AuditRow.id > last_id).order_by(AuditRow.id).limit(batch))
                )
                if not rows:
                    return VerifyResult(True, checked)
                for row in rows:
                    if row.prev_hash != expected_prev:
                        return VerifyResult(
                            False, checked, row.id, "prev_hash does not match the row before: a row was removed or altered"
                        )
                    if row_hash(row.prev_hash, _hashed_fields(row)) != row.hash:
                        return VerifyResult(False, checked, row.id, "the row's content does not match its hash: it was altered")
                    expected_prev = row.hash
                    checked += 1
                    last_id = row.id
                s.expunge_all()

    def query(
        self,
        *,
        user: str | None = None,
        action: str | None = None,
        camera_id: str | None = None,
        outcome: str | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        before_id: int | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[AuditEntry]:
        """Rows matching every filter given; ``since_us`` inclusive, ``until_us`` exclusive.

        Page backwards with ``before_id`` = the smallest id of the previous page.
        """
        q = select(AuditRow)
        if user is not None:
            q = q.where(AuditRow.user == user)
        if action is not None:
            q = q.where(AuditRow.action == action)
        if camera_id is not None:
            q = q.where(AuditRow.camera_id == camera_id)
        if outcome is not None:
            q = q.where(AuditRow.outcome == outcome)
        if since_us is not None:
            q = q.where(AuditRow.time_us >= since_us)
        if until_us is not None:
            q = q.where(AuditRow.time_us < until_us)
        if before_id is not None:
            q = q.where(AuditRow.id < before_id)
        q = q.order_by(AuditRow.id.desc() if newest_first else AuditRow.id).limit(max(1, min(limit, 100_000)))
        with self._sessions() as s:
            return [_entry(r) for r in s.scalars(q)]

    def export_csv(self, out: TextIO, *, since_us: int | None = None, until_us: int | None = None) -> int:
        """Write rows in ``[since_us, until_us)`` as CSV (header first), oldest first; return the row count.

        The hash columns are included so the export can be checked against the chain later.
        """
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        count = 0
        q = select(AuditRow).order_by(AuditRow.id)
        if since_us is not None:
            q = q.where(AuditRow.time_us >= since_us)
        if until_us is not None:
            q = q.where(AuditRow.time_us < until_us)
        with self._sessions() as s:
            for row in s.scalars(q.execution_options(yield_per=1000)):
                entry = asdict(_entry(row))
                writer.writerow(["" if entry[c] is None else entry[c] for c in CSV_COLUMNS])
                count += 1
        return count

    def export_csv_text(self, **kwargs: int | None) -> str:
        out = io.StringIO()
        self.export_csv(out, **kwargs)  # type: ignore[arg-type]
        return out.getvalue()


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        time_us=row.time_us,
        user=row.user,
        role=row.role,
        client_ip=row.client_ip,
        action=row.action,
        camera_id=row.camera_id,
        range_start_us=row.range_start_us,
        range_end_us=row.range_end_us,
        outcome=row.outcome,
        detail=row.detail,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
