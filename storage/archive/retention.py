"""``RetentionCleaner``: deletes recordings past their camera's retention, over a byte
quota, or while the local store runs out of disk; never a segment under a legal hold.

One job with an explicit ``start``/``close`` and an injectable clock (and free-space
probe), in the manner of MediaMTX's record cleaner, so tests run weeks in seconds.

Order of one deletion (docs/reliability.md, "Retention"):

1. One transaction: delete the segment row, add (or extend) the ``retention`` gap
   that covers it, and journal the object key in ``retention_deletes``.
2. Delete the object (idempotent).
3. Delete the journal row.

The row goes first so that no row ever points at a missing object (playback and
export trust rows). A crash after 1 leaves an object without a row, but its key is
journalled in the same transaction that removed the row, and ``run_once`` finishes
journalled deletes before anything else: after recovery no object is left without
its row either.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from config.cameras import Camera
from storage.archive.holds import HoldStore
from storage.index.segments import SegmentIndex
from storage.objects.store import ObjectStore, ObjectStoreUnavailable
from storage.db.partitions import drop_partition, ensure_partitions, partitions
from storage.db.schema import STREAM_CODES, GapRow, HoldRow, RetentionDeleteRow, SegmentCameraRow, SegmentRow

log = logging.getLogger(__name__)

DAY_US = 86_400_000_000
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for lock_timeout

# is_held(camera_id, stream, start_us, end_us): True if any legal hold covers part of the span.
HoldCheck = Callable[[str, str, int, int], bool]
Clock = Callable[[], int]


@dataclass
class RetentionPolicy:
    """What to keep. Quotas of 0 mean none."""

    camera_quota_bytes: int = 0
    region_quota_bytes: dict[str, int] = field(default_factory=dict)
    min_free_bytes: int = 0  # local store: clean while free disk is below this
    index_only: bool = False  # bucket lifecycle rules delete the objects; only rows go here


@dataclass
class CleanupReport:
    deleted_segments: int = 0
    deleted_bytes: int = 0
    held_skipped: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)  # "age", "camera_quota", "region_quota", "low_space"
    journal_finished: int = 0
    dropped_partitions: list[str] = field(default_factory=list)  # PostgreSQL: whole months, segments and gaps


class RetentionCleaner:
    """Applies retention to the index and the object store."""

    def __init__(
        self,
        index: SegmentIndex,
        store: ObjectStore,
        cameras: Callable[[], Iterable[Camera]],
        *,
        clock: Clock,
        is_held: HoldCheck | None = None,
        policy: RetentionPolicy | None = None,
        region_of: Callable[[str], set[str]] | None = None,
        free_bytes: Callable[[], int] | None = None,
        interval_seconds: float = 300.0,
        batch: int = 500,
    ):
        """``cameras`` lists the registered cameras (their ``retention_days``);
        ``region_of(code)`` gives a region and its sub-regions (for region quotas);
        ``free_bytes`` measures the local store's free disk (for the low-space guard)."""
        self.index = index
        self.store = store
        self.cameras = cameras
        self.clock = clock
        # Legal holds are checked by default: forgetting to pass them must never delete evidence.
        self.is_held = is_held or HoldStore(index.engine).is_held
        self.policy = policy or RetentionPolicy()
        self.region_of = region_of or (lambda code: {code})
        self.free_bytes = free_bytes
        self.interval_seconds = interval_seconds
        self.batch = batch
        self.total = CleanupReport()  # since start, for metrics
        self.runs = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - retry at the next interval
                self.last_error = str(exc)
                log.exception("retention run failed; retrying in %.0f s", self.interval_seconds)
            self._stop.wait(self.interval_seconds)

    # -- one pass -------------------------------------------------------------------------

    def run_once(self) -> CleanupReport:
        report = CleanupReport()
        report.journal_finished = self._finish_journal()
        now = self.clock()
        cams = {c.id: c for c in self.cameras()}
        # 0. PostgreSQL: partitions ahead, and whole months past every retention dropped.
        self._maintain_partitions(now, cams, report)
        # 1. Age: every segment that ended before its camera's cutoff. Cameras no longer
        # registered keep the default floor (their recordings are evidence too).
        for cam_id, stream in self._streams():
            cam = cams.get(cam_id)
            days = cam.retention_days if cam is not None else 30
            cutoff = now - days * DAY_US
            for row in self._oldest(cam_ids=[cam_id], stream=stream, ended_before=cutoff):
                self._delete(row, "age", report)
        # 2. Byte quotas, oldest first.
        if self.policy.camera_quota_bytes:
            for cam_id in cams:
                self._enforce_quota([cam_id], self.policy.camera_quota_bytes, "camera_quota", report)
        for code, quota in self.policy.region_quota_bytes.items():
            members = [c.id for c in cams.values() if c.region in self.region_of(code)]
            if members and quota:
                self._enforce_quota(members, quota, "region_quota", report)
        # 3. Low space on the local store: oldest non-held first, across all cameras.
        if self.policy.min_free_bytes and self.free_bytes is not None:
            self._guard_space(report)
        self.runs += 1
        _add(self.total, report)
        return report

    def _maintain_partitions(self, now: int, cams: dict[str, Camera], report: CleanupReport) -> None:
        """Create the coming months' partitions (segments and gaps); with ``index_only`` (the
        bucket's lifecycle rules delete the objects) drop each month of segments that ended a
        day before the longest retention's cutoff and that no hold overlaps, after writing
        its retention gaps. Without ``index_only`` every object must be deleted by key, so
        segment rows go one by one. Then drop the months of gaps past that cutoff
        (``_drop_gap_months``: gaps have no objects, so with or without ``index_only``)."""
        engine = self.index.engine
        ensure_partitions(engine, now_us=now)
        longest = max((c.retention_days for c in cams.values()), default=30)
        cutoff = now - longest * DAY_US - DAY_US
        if self.policy.index_only:
            self._drop_segment_months(cutoff, cams, report)
        self._drop_gap_months(cutoff, report)

    def _drop_segment_months(self, cutoff: int, cams: dict[str, Camera], report: CleanupReport) -> None:
        engine = self.index.engine
        with engine.connect() as conn:
            months = [p for p in partitions(conn) if p.end_us <= cutoff]
        for p in months:
            with self.index.session() as s, s.begin():
                held = self._holds_over(s, p.start_us, p.end_us)
                if held:
                    log.info("retention: partition %s kept: %d hold(s) overlap it", p.name, held)
                    continue
                rows = _estimated_rows(s, p.name)
                for cam_id in cams:
                    for stream in ("main", "sub"):
                        if s.execute(text(f"SELECT 1 FROM {p.name} WHERE camera_seq = (SELECT seq FROM "
                                          "segment_cameras WHERE camera_id = :c) AND stream = :s LIMIT 1"),
                                     {"c": cam_id, "s": STREAM_CODES[stream]}).first():
                            s.add(GapRow(camera_id=cam_id, stream=stream, start_us=p.start_us, end_us=p.end_us,
                                         reason="retention", detail=f"partition {p.name} dropped by retention"))
            drop_partition(engine, p)
            report.by_rule["partition"] = report.by_rule.get("partition", 0) + max(rows, 0)
            report.dropped_partitions.append(p.name)
            log.info("retention: dropped partition %s (~%d rows)", p.name, rows)

    def _drop_gap_months(self, cutoff: int, report: CleanupReport) -> None:
        """Drop each month of gaps that ended before ``cutoff`` (the longest retention, plus
        a day) when every gap in it ended before the cutoff too and no hold overlaps what
        its gaps cover. A gap lives in the month of its start, however long it runs: a gap
        still open (a camera offline since then) or one that ends inside someone's retention
        keeps its month, since it is the timeline of now. So does a hold, as for segments.
        A month of segments dropped here takes its month of gaps along (its retention gaps
        too: nothing of the month is kept), unless such a gap keeps it."""
        engine = self.index.engine
        live = "end_us IS NULL OR end_us > :cutoff"
        with engine.connect() as conn:
            months = [p for p in partitions(conn, "gaps") if p.end_us <= cutoff]
        for p in months:
            with self.index.session() as s:
                if s.execute(text(f"SELECT 1 FROM {p.name} WHERE {live} LIMIT 1"), {"cutoff": cutoff}).first():
                    log.debug("retention: partition %s kept: a gap in it is open or ends after %d", p.name, cutoff)
                    continue
                reach = max(int(s.execute(text(f"SELECT coalesce(max(end_us), 0) FROM {p.name}")).scalar_one()),
                            p.end_us)
                held = self._holds_over(s, p.start_us, reach)
                if held:
                    log.info("retention: partition %s kept: %d hold(s) overlap its gaps", p.name, held)
                    continue
                rows = _estimated_rows(s, p.name)
            try:
                # Checked again under the DETACH's lock: a gap written meanwhile keeps the month.
                dropped = drop_partition(engine, p, keep_if=live, params={"cutoff": cutoff})
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                # A long reader or writer holds gaps: this month waits for the next run; the
                # rest of this one (segments by age, quotas) goes on.
                log.warning("retention: partition %s not dropped, gaps is busy (lock timeout); next run", p.name)
                continue
            if dropped:
                report.dropped_partitions.append(p.name)
                log.info("retention: dropped partition %s (~%d gaps)", p.name, rows)

    @staticmethod
    def _holds_over(s: Session, start_us: int, end_us: int) -> int:
        """Active holds (of any camera) overlapping ``[start_us, end_us)``."""
        return int(s.scalar(select(func.count()).select_from(HoldRow).where(
            HoldRow.released_us.is_(None), HoldRow.start_us < end_us, HoldRow.end_us > start_us)) or 0)

    def _guard_space(self, report: CleanupReport) -> None:
        held = 0  # held segments at the head of the list: stepped over, never deleted
        while self.free_bytes() < self.policy.min_free_bytes:  # type: ignore[misc]
            rows = self._oldest(cam_ids=None, stream=None, ended_before=None, limit=held + self.batch)[held:]
            if not rows:
                log.error("object store below %d free bytes and nothing deletable is left (the rest is held)",
                          self.policy.min_free_bytes)
                return
            for row in rows:
                if self.free_bytes() >= self.policy.min_free_bytes:  # type: ignore[misc]
                    return
                if not self._delete(row, "low_space", report):
                    held += 1

    def _streams(self) -> list[tuple[str, str]]:
        with self.index.session() as s:
            return [(c, st) for c, st in s.execute(
                select(SegmentCameraRow.camera_id, SegmentRow.stream).distinct()
                .join(SegmentCameraRow, SegmentCameraRow.seq == SegmentRow.camera_seq))]

    def _oldest(self, cam_ids: list[str] | None, stream: str | None, ended_before: int | None,
                limit: int | None = None) -> list[SegmentRow]:
        q = select(SegmentRow)
        if cam_ids is not None:
            q = q.where(SegmentRow.camera_id.in_(cam_ids))
        if stream is not None:
            q = q.where(SegmentRow.stream == stream)
        if ended_before is not None:
            q = q.where(SegmentRow.end_us <= ended_before)
        with self.index.session() as s:
            return list(s.scalars(q.order_by(SegmentRow.start_us).limit(limit or self.batch)))

    def _enforce_quota(self, cam_ids: list[str], quota: int, rule: str, report: CleanupReport) -> None:
        with self.index.session() as s:
            used = int(s.scalar(select(func.coalesce(func.sum(SegmentRow.bytes), 0))
                                .where(SegmentRow.camera_id.in_(cam_ids))) or 0)
        offset = 0
        while used > quota:
            rows = self._oldest(cam_ids, None, None, limit=self.batch + offset)[offset:]
            if not rows:
                break
            for row in rows:
                if used <= quota:
                    break
                if self._delete(row, rule, report):
                    used -= row.bytes
                else:
                    offset += 1  # held: step over it, it stays

    # -- deleting one segment ---------------------------------------------------------------

    def _delete(self, row: SegmentRow, rule: str, report: CleanupReport) -> bool:
        if self.is_held(row.camera_id, row.stream, row.start_us, row.end_us):
            report.held_skipped += 1
            return False
        journal_id = self._remove_row(row)
        if journal_id is None:
            return False  # already gone (another cleaner)
        if not self.policy.index_only:
            try:
                self.store.delete(row.object_key)
            except ObjectStoreUnavailable as exc:
                # The journal keeps the key: the next run deletes it.
                self.last_error = str(exc)
                log.warning("retention: store unavailable deleting %s; will retry: %s", row.object_key, exc)
                journal_id = None
        if journal_id is not None:
            with self.index.session() as s, s.begin():
                s.execute(delete(RetentionDeleteRow).where(RetentionDeleteRow.id == journal_id))
        report.deleted_segments += 1
        report.deleted_bytes += row.bytes
        report.by_rule[rule] = report.by_rule.get(rule, 0) + 1
        return True

    def _remove_row(self, row: SegmentRow) -> int | None:
        """Step 1: row out, retention gap in (merged with a touching one), key journalled."""
        with self.index.session() as s, s.begin():
            # By the natural key: it is the primary key on PostgreSQL (partition-pruned), where id has no index.
            gone = s.execute(delete(SegmentRow).where(
                SegmentRow.camera_id == row.camera_id, SegmentRow.stream == row.stream,
                SegmentRow.start_us == row.start_us, SegmentRow.id == row.id))
            if gone.rowcount == 0:  # type: ignore[attr-defined]
                return None
            # A retention gap that ends where this segment starts (or overlaps it) grows.
            before = s.scalar(
                select(GapRow).where(
                    GapRow.camera_id == row.camera_id, GapRow.stream == row.stream, GapRow.reason == "retention",
                    GapRow.start_us <= row.start_us, GapRow.end_us >= row.start_us,
                ).limit(1)
            )
            after = s.scalar(
                select(GapRow).where(
                    GapRow.camera_id == row.camera_id, GapRow.stream == row.stream, GapRow.reason == "retention",
                    GapRow.start_us <= row.end_us, GapRow.start_us > row.start_us,
                ).limit(1)
            )
            if before is not None and after is not None and before.id != after.id:
                before.end_us = max(after.end_us or row.end_us, row.end_us)
                s.delete(after)
            elif before is not None:
                before.end_us = max(before.end_us or row.end_us, row.end_us)
            elif after is not None:
                after.start_us = row.start_us
            else:
                s.add(GapRow(camera_id=row.camera_id, stream=row.stream, start_us=row.start_us,
                             end_us=row.end_us, reason="retention", detail="deleted by retention"))
            journal = RetentionDeleteRow(object_key=row.object_key, created_us=self.clock())
            s.add(journal)
            s.flush()
            return journal.id

    def _finish_journal(self) -> int:
        """Delete the objects of rows removed by a run that did not finish (crash, store down)."""
        with self.index.session() as s:
            pending = list(s.scalars(select(RetentionDeleteRow).order_by(RetentionDeleteRow.id)))
        done = 0
        for p in pending:
            if not self.policy.index_only:
                try:
                    self.store.delete(p.object_key)
                except ObjectStoreUnavailable as exc:
                    self.last_error = str(exc)
                    log.warning("retention: store unavailable; %d journalled delete(s) wait", len(pending) - done)
                    break
            with self.index.session() as s, s.begin():
                s.execute(delete(RetentionDeleteRow).where(RetentionDeleteRow.id == p.id))
            done += 1
        return done


def _add(total: CleanupReport, r: CleanupReport) -> None:
    total.deleted_segments += r.deleted_segments
    total.deleted_bytes += r.deleted_bytes
    total.held_skipped += r.held_skipped
    total.journal_finished += r.journal_finished
    total.dropped_partitions.extend(r.dropped_partitions)
    for k, v in r.by_rule.items():
        total.by_rule[k] = total.by_rule.get(k, 0) + v


def _estimated_rows(s: Session, table: str) -> int:
    """The planner's row count of ``table`` (for the log; counting a month would read it all)."""
    return int(s.execute(text("SELECT reltuples FROM pg_class WHERE relname = :n"), {"n": table}).scalar() or 0)


def disk_free(path: Path) -> Callable[[], int]:
    """Free bytes on the filesystem of ``path`` (the local object store)."""
    return lambda: shutil.disk_usage(path).free


# -- S3 bucket lifecycle ---------------------------------------------------------------


def lifecycle_rules(cameras: Iterable[Camera], margin_days: int = 1) -> list[dict[str, object]]:
    """One expiration rule per camera prefix (``{camera_id}/``), ``retention_days +
    margin_days`` after creation. The margin lets the cleaner (in index-only mode) drop
    the rows first, so a row never points at an object the bucket already expired."""
    return [
        {"id": f"sharpeyes-retention-{c.id}", "prefix": f"{c.id}/", "days": c.retention_days + margin_days}
        for c in sorted(cameras, key=lambda c: c.id)
    ]


def apply_lifecycle(client: object, bucket: str, rules: list[dict[str, object]]) -> None:
    """Set the rules on ``bucket`` with a ``minio.Minio`` client (replaces the bucket's lifecycle)."""
    from minio.commonconfig import ENABLED, Filter
    from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

    config = LifecycleConfig([
        Rule(ENABLED, rule_filter=Filter(prefix=str(r["prefix"])), rule_id=str(r["id"]),
             expiration=Expiration(days=int(r["days"])))  # type: ignore[call-overload]
        for r in rules
    ])
    client.set_bucket_lifecycle(bucket, config)  # type: ignore[attr-defined]
