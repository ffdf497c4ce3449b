"""Concurrent audit appends keep one unbroken chain, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import text
from sqlalchemy.engine import Engine

from streams.access.audit import AuditLog


def test_concurrent_appends_keep_one_chain(index_engine: Engine) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        log = AuditLog(index_engine)
        try:
            for i in range(20):
                log.append(user=f"w{n}", role="viewer", client_ip="10.0.0.1", action="live_start", camera_id=f"c{i}")
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = AuditLog(index_engine).verify()
    assert result.ok and result.rows_checked == 80
    # Ids may skip numbers (a retried insert burns a sequence value); the chain does not care.
    target = AuditLog(index_engine).query(newest_first=False, limit=80)[17].id
    with index_engine.begin() as c:
        c.execute(text("UPDATE audit SET client_ip = '1.2.3.4' WHERE id = :id"), {"id": target})
    assert AuditLog(index_engine).verify().bad_row_id == target
