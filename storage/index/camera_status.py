"""``CameraStatusTable``: camera stream statuses that ingest workers publish to the index.

API nodes record nothing, so they cannot ask a supervisor how a camera is doing;
each worker upserts the statuses of the streams it records every few seconds,
and any node reads them here. A row not refreshed for ``stale_us`` belongs to a
worker that died or let the camera go, and is not reported.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from sqlalchemy import Engine, delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import sessionmaker

from storage.db.schema import CameraStatusRow


class CameraStatusTable:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        stmt = self._insert(CameraStatusRow.__table__)
        self._upsert = stmt.on_conflict_do_update(
            index_elements=["camera_id", "stream"],
            set_={c: stmt.excluded[c] for c in ("worker_id", "state", "fps", "bitrate_bps", "last_error", "detail",
                                                "updated_us")})

    def publish(self, worker_id: str, statuses: Iterable[dict[str, Any]], *, now_us: int) -> int:
        """Upsert ``statuses`` (``CameraStatus.as_dict()``s, errors already redacted)
        as ``worker_id``'s; returns how many rows were written.

        One transaction, rows in key order: a worker of a 5,000-camera county
        publishes ~500 rows a round, and two workers upserting the same rows in another
        order (a camera just moved) deadlocked (tests/bench/county_sim.py found both)."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for st in statuses:
            rows[(st["camera_id"], st["stream"])] = {
                "camera_id": st["camera_id"],
                "stream": st["stream"],
                "worker_id": worker_id,
                "state": str(st.get("state", "")),
                "fps": float(st.get("fps", 0.0)),
                "bitrate_bps": float(st.get("bitrate_bps", 0.0)),
                "last_error": str(st.get("last_error", "")),
                "detail": json.dumps(st),
                "updated_us": now_us,
            }
        if not rows:
            return 0
        ordered = [rows[k] for k in sorted(rows)]
        with self.engine.begin() as c:
            # One prepared upsert, executed for every row (psycopg pipelines them): the
            # multi-row VALUES statement it replaces was compiled afresh for every round
            # (~4,500 bound values at 500 rows) and was a fifth of a simulated worker's
            # CPU (tests/bench/county_sim.py, py-spy).
            c.execute(self._upsert, ordered)
        return len(rows)

    def statuses(self, *, now_us: int, stale_us: int) -> dict[tuple[str, str], dict[str, Any]]:
        """{(camera, stream): status dict + ``worker_id`` and ``updated_us``} of fresh rows."""
        with self._sessions() as s:
            rows = s.scalars(select(CameraStatusRow).where(CameraStatusRow.updated_us > now_us - stale_us))
            out = {}
            for r in rows:
                d = json.loads(r.detail or "{}")
                d.update(camera_id=r.camera_id, stream=r.stream, state=r.state, fps=r.fps,
                         bitrate_bps=r.bitrate_bps, last_error=r.last_error, worker_id=r.worker_id,
                         updated_us=r.updated_us)
                out[(r.camera_id, r.stream)] = d
            return out

    def withdraw(self, worker_id: str, keys: Iterable[tuple[str, str]]) -> None:
        """Delete ``worker_id``'s rows for streams it no longer records (a new owner's rows stay).

        One statement per 400 keys, rows locked in key order as ``publish`` locks them (a
        DELETE a row, each its own round trip, held the first rows' locks while a starved
        worker sent the rest, and the new owners' ``publish`` queued behind it:
        tests/bench/county_sim.py, ``pg_stat_activity``)."""
        ordered = sorted(keys)
        t = CameraStatusRow
        with self._sessions() as s, s.begin():
            for i in range(0, len(ordered), 400):  # SQLite takes at most 32,766 bound values a statement
                mine = select(t.camera_id, t.stream).where(
                    t.worker_id == worker_id, tuple_(t.camera_id, t.stream).in_(ordered[i:i + 400]))
                if self.engine.dialect.name == "postgresql":
                    mine = mine.order_by(t.camera_id, t.stream).with_for_update()
                s.execute(delete(t).where(t.worker_id == worker_id, tuple_(t.camera_id, t.stream).in_(mine)))
