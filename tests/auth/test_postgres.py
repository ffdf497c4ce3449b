"""Migration 0002 and concurrent audit appends on a real PostgreSQL, in a fresh database (skipped without one)."""

from __future__ import annotations

import os
import threading
import uuid
from typing import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from storage.audit import AuditLog
from storage.database import open_engine

ADMIN_URL = os.environ.get("SHARPEYES_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    try:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            name = f"sharpeyes_auth_{uuid.uuid4().hex[:12]}"
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure means no server to test against
        pytest.skip(f"no PostgreSQL at {ADMIN_URL}: {exc.__class__.__name__}")
    engine = open_engine(ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_concurrent_appends_on_postgres(pg_engine: Engine) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        log = AuditLog(pg_engine)
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
    result = AuditLog(pg_engine).verify()
    assert result.ok and result.rows_checked == 80
    # Ids may skip numbers (a retried insert burns a sequence value); the chain does not care.
    target = AuditLog(pg_engine).query(newest_first=False, limit=80)[17].id
    with pg_engine.begin() as c:
        c.execute(text("UPDATE audit SET client_ip = '1.2.3.4' WHERE id = :id"), {"id": target})
    assert AuditLog(pg_engine).verify().bad_row_id == target


def test_migrations_match_models_on_postgres(pg_engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from storage.schema import Base

    with pg_engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0002"
