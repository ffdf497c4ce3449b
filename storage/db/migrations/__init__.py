"""Alembic migrations for the index. ``upgrade_to_head`` runs them on an engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

HERE = Path(__file__).resolve().parent


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if engine is not None:
        cfg.attributes["engine"] = engine
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema of ``engine``'s database to the newest revision."""
    # "heads": work branches may add migrations in parallel before they are chained.
    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(engine), "heads")  # SQLite serialises writers itself
        return
    # Many workers and API nodes start at once against one PostgreSQL: one migrates,
    # the others wait on the advisory lock and then find nothing to do.
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_advisory_lock(728375001)")
        try:
            command.upgrade(alembic_config(engine), "heads")
        finally:
            conn.exec_driver_sql("SELECT pg_advisory_unlock(728375001)")
            conn.commit()
