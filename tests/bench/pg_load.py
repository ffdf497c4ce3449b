"""What the index benchmarks share: GB/T 28181-style camera ids and bulk loads by ``COPY``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from sqlalchemy import Engine


def camera_id(i: int) -> str:
    """The ``i``-th simulated camera: a 20-digit GB/T 28181 channel id (code 132, a camera)."""
    return f"3402000000132{i:07d}"


def copy_rows(engine: Engine, table: str, columns: Sequence[str], rows: Iterable[Sequence[object]],
              *, analyze: bool = True) -> float:
    """``COPY`` ``rows`` into ``table`` in one transaction, then ``VACUUM ANALYZE`` it (so the
    measured queries see real statistics); returns the seconds it took. PostgreSQL only."""
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for row in rows:
                copy.write_row(row)
        raw.commit()
        if analyze:
            raw.driver_connection.autocommit = True  # type: ignore[attr-defined]
            cur.execute(f"VACUUM ANALYZE {table}")
    finally:
        raw.close()
    return time.perf_counter() - started
