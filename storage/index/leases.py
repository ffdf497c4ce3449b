"""Camera leases and worker heartbeats in the index: how ingest workers share cameras.

A lease row per camera says which worker records it, until when (``expires_us``),
and under which ``epoch``. The epoch is the fencing token: it grows by one each
time the owner changes, never when an owner renews or takes back its own lapsed
lease. ``SegmentIndex.add_segment(rec, fence=(worker_id, epoch))`` indexes only
while that pair is still the row's, so a worker that was paused past its lease
cannot index what it recorded after another worker took the camera.

Acquisition is atomic on both back ends: on PostgreSQL the free rows are picked
``FOR UPDATE SKIP LOCKED`` (two workers never wait on each other and never pick
the same row); on SQLite, where writers are serialised anyway, each row is taken
with a conditional UPDATE (compare-and-swap on owner and epoch) and a rowcount
of 1 means it was won.

All times are the caller's wall clock in µs: workers must keep their clocks in
step (NTP), with the skew well under the lease TTL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from sqlalchemy import Engine, case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import sessionmaker

from storage.db.engine import single_statements
from storage.db.schema import CameraLeaseRow, CameraRow, WorkerRow


class DuplicateWorker(RuntimeError):
    """Another live process already runs under this worker id (its instance token
    differs and it keeps heartbeating). Two would record the same cameras."""


@dataclass(frozen=True)
class Lease:
    camera_id: str
    worker_id: str
    epoch: int
    expires_us: int
    acquired_us: int

    def held_at(self, now_us: int) -> bool:
        return bool(self.worker_id) and self.expires_us > now_us


@dataclass(frozen=True)
class WorkerInfo:
    worker_id: str
    last_seen_us: int
    capacity: int
    held: int
    advertise_url: str


class LeaseTable:
    """The ``camera_leases`` and ``workers`` tables. Thread-safe: one session per call."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Every call of a lease round is one statement: no BEGIN/COMMIT round trips.
        self._one = sessionmaker(single_statements(engine), expire_on_commit=False)
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    # -- workers ------------------------------------------------------------------

    def heartbeat(self, worker_id: str, *, now_us: int, capacity: int = 0, held: int = 0,
                  advertise_url: str = "", instance: str = "") -> None:
        """Say ``worker_id`` is alive now (insert or update its row). With ``instance``
        (this process's token, see ``register``) the row is updated only while it
        still carries that token; ``DuplicateWorker`` if another process took it."""
        values = {"worker_id": worker_id, "last_seen_us": now_us, "capacity": capacity, "held": held,
                  "advertise_url": advertise_url}
        stmt = self._insert(WorkerRow.__table__).values(**values, started_us=now_us, instance=instance)
        stmt = stmt.on_conflict_do_update(
            index_elements=["worker_id"], set_=values,
            # "" is a row no process claimed (written before migration 0014, or by hand).
            where=WorkerRow.__table__.c.instance.in_([instance, ""]) if instance else None)
        with self._one() as s, s.begin():
            # RETURNING, not rowcount: psycopg counts an upsert whose WHERE refused the update.
            done = s.execute(stmt.returning(WorkerRow.__table__.c.worker_id)).first()
            if instance and done is None:
                other = s.get(WorkerRow, worker_id)
                raise DuplicateWorker(
                    f"worker id {worker_id!r} was taken by another process (instance "
                    f"{other.instance if other else '?'}); this process ({instance}) stops recording. "
                    "Give every ingest process its own --worker-id")

    def register(self, worker_id: str, instance: str, *, now_us: int, ttl_us: int,
                 wait: Callable[[], None], clock: Callable[[], int]) -> None:
        """Claim ``worker_id`` for this process (token ``instance``) before it records.

        A row of another instance seen within ``ttl_us`` may be a live process or one
        that just crashed: ``wait()`` (longer than that worker's heartbeat interval)
        is called and the row read again. If it was heartbeated meanwhile, another
        live process uses the id: ``DuplicateWorker``. Else the old process is gone
        and the id is taken over (compare-and-swap on the old token)."""
        with self._sessions() as s:
            row = s.get(WorkerRow, worker_id)
            seen = (row.instance, row.last_seen_us, row.advertise_url) if row is not None else None
        if seen is not None and seen[0] != instance and seen[1] > now_us - ttl_us:
            wait()
            with self._sessions() as s:
                row = s.get(WorkerRow, worker_id)
                again = (row.instance, row.last_seen_us) if row is not None else None
            if again is not None and again != seen[:2]:
                ago = (clock() - again[1]) / 1e6
                raise DuplicateWorker(
                    f"worker id {worker_id!r} is in use by another live process (instance {again[0]}, "
                    f"last heartbeat {ago:.1f} s ago, advertised at {seen[2] or 'no URL'}). Two processes with one "
                    "id would record the same cameras: give this one another --worker-id (or "
                    "SHARPEYES_WORKER_ID), or stop the other first")
        now = clock()
        values = {"worker_id": worker_id, "last_seen_us": now, "instance": instance}
        stmt = self._insert(WorkerRow.__table__).values(**values, capacity=0, held=0, advertise_url="",
                                                        started_us=now)
        table = WorkerRow.__table__
        stmt = stmt.on_conflict_do_update(
            index_elements=["worker_id"], set_={"last_seen_us": now, "instance": instance, "started_us": now},
            where=(table.c.instance == (seen[0] if seen is not None else instance)) | (table.c.instance == instance))
        with self._sessions() as s, s.begin():
            if s.execute(stmt.returning(table.c.worker_id)).first() is None:
                raise DuplicateWorker(f"worker id {worker_id!r}: another process registered under it at the same "
                                      "moment; give each ingest process its own --worker-id")

    def live_workers(self, now_us: int, ttl_us: int) -> list[WorkerInfo]:
        """Workers seen within the last ``ttl_us``."""
        with self._one() as s:
            rows = s.scalars(select(WorkerRow).where(WorkerRow.last_seen_us > now_us - ttl_us).order_by(WorkerRow.worker_id))
            return [_worker(r) for r in rows]

    def worker(self, worker_id: str) -> WorkerInfo | None:
        with self._sessions() as s:
            row = s.get(WorkerRow, worker_id)
            return _worker(row) if row is not None else None

    def forget_worker(self, worker_id: str) -> None:
        """Remove a worker that stopped cleanly, so the others count it out at once."""
        with self._sessions() as s, s.begin():
            s.execute(delete(WorkerRow).where(WorkerRow.worker_id == worker_id))

    # -- leases -------------------------------------------------------------------

    def ensure(self, camera_ids: Iterable[str]) -> None:
        """Create a free lease row for every camera that has none yet: one multi-row
        insert in key order (20 workers each inserting 5,000 rows one by one queued behind
        each other's uncommitted rows for minutes: tests/bench/county_sim.py)."""
        ids = list(camera_ids)
        if not ids:
            return
        with self._sessions() as s, s.begin():
            have = set(s.scalars(select(CameraLeaseRow.camera_id).where(CameraLeaseRow.camera_id.in_(ids))))
            missing = sorted(set(ids) - have)
            for i in range(0, len(missing), 1000):  # SQLite takes at most 32,766 bound values a statement
                s.execute(self._insert(CameraLeaseRow.__table__)
                          .values([{"camera_id": c, "worker_id": "", "epoch": 0, "expires_us": 0, "heartbeat_us": 0,
                                    "acquired_us": 0} for c in missing[i:i + 1000]])
                          .on_conflict_do_nothing(index_elements=["camera_id"]))

    def leases(self) -> list[Lease]:
        with self._one() as s:
            return [_lease(r) for r in s.scalars(select(CameraLeaseRow).order_by(CameraLeaseRow.camera_id))]

    def lease(self, camera_id: str) -> Lease | None:
        with self._sessions() as s:
            row = s.get(CameraLeaseRow, camera_id)
            return _lease(row) if row is not None else None

    def renew(self, worker_id: str, camera_ids: Iterable[str], *, now_us: int, ttl_us: int) -> dict[str, int]:
        """Extend ``worker_id``'s leases on ``camera_ids``; returns those it still owns,
        with their epochs. A camera missing from the answer was taken by another worker."""
        ids = list(camera_ids)
        if not ids:
            return {}
        # One UPDATE … RETURNING (it was an UPDATE and a SELECT in a transaction: four round trips).
        with self._one() as s, s.begin():
            rows = s.execute(
                update(CameraLeaseRow)
                .where(CameraLeaseRow.worker_id == worker_id, CameraLeaseRow.camera_id.in_(ids))
                .values(expires_us=now_us + ttl_us, heartbeat_us=now_us)
                .returning(CameraLeaseRow.camera_id, CameraLeaseRow.epoch)
            ).all()
        return {cam: epoch for cam, epoch in rows}

    def acquire(self, worker_id: str, candidates: Sequence[str] | None, limit: int, *, now_us: int, ttl_us: int,
                free_before_us: int | None = None) -> dict[str, int]:
        """Take up to ``limit`` of ``candidates`` whose lease expired before
        ``free_before_us`` (default ``now_us``); returns {camera: epoch} of those won.
        ``candidates=None``: every enabled camera of the registry in this database (what a
        ``LeaseKeeper`` polls for: no list of ~5,000 ids bound into each statement).

        One statement: ``UPDATE … WHERE camera_id IN (SELECT … LIMIT n FOR UPDATE SKIP
        LOCKED) RETURNING``. The row-by-row version held its row locks across a round
        trip per camera, and with 5,000 cameras and 20 workers on a loaded machine
        other workers' renewals and fenced inserts queued behind it for half a minute
        (tests/bench/county_sim.py). The epoch grows only on a change of owner."""
        if limit <= 0 or candidates is not None and not candidates:
            return {}
        free_before = now_us if free_before_us is None else free_before_us
        t = CameraLeaseRow.__table__
        among = (t.c.camera_id.in_(select(CameraRow.id).where(CameraRow.enabled)) if candidates is None
                 else t.c.camera_id.in_(list(candidates)))
        pick = (select(t.c.camera_id)
                .where(among, t.c.expires_us < free_before)
                .order_by(t.c.camera_id).limit(limit))
        if self.engine.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        changed = t.c.worker_id != worker_id
        stmt = (update(t)
                .where(t.c.camera_id.in_(pick.scalar_subquery()), t.c.expires_us < free_before)
                .values(worker_id=worker_id, epoch=case((changed, t.c.epoch + 1), else_=t.c.epoch),
                        acquired_us=case((changed, now_us), else_=t.c.acquired_us),
                        expires_us=now_us + ttl_us, heartbeat_us=now_us)
                .returning(t.c.camera_id, t.c.epoch))
        with self._one() as s, s.begin():
            return {cam: epoch for cam, epoch in s.execute(stmt).all()}

    def release(self, worker_id: str, camera_ids: Iterable[str], *, now_us: int) -> None:
        """Give up leases now: free to anyone from ``now_us`` on (owner and epoch stay,
        so taking one back is no owner change)."""
        ids = list(camera_ids)
        if not ids:
            return
        with self._one() as s, s.begin():
            s.execute(
                update(CameraLeaseRow)
                .where(CameraLeaseRow.worker_id == worker_id, CameraLeaseRow.camera_id.in_(ids))
                .values(expires_us=now_us - 1)
            )

    def owner_url(self, camera_id: str, *, now_us: int) -> str | None:
        """The advertised base URL of the worker holding ``camera_id`` now, if any."""
        with self._sessions() as s:
            row = s.execute(
                select(CameraLeaseRow.expires_us, WorkerRow.advertise_url)
                .join(WorkerRow, WorkerRow.worker_id == CameraLeaseRow.worker_id)
                .where(CameraLeaseRow.camera_id == camera_id)
            ).first()
        if row is None or row[0] <= now_us or not row[1]:
            return None
        return str(row[1])


def _lease(r: CameraLeaseRow) -> Lease:
    return Lease(r.camera_id, r.worker_id, r.epoch, r.expires_us, r.acquired_us)


def _worker(r: WorkerRow) -> WorkerInfo:
    return WorkerInfo(r.worker_id, r.last_seen_us, r.capacity, r.held, r.advertise_url)
