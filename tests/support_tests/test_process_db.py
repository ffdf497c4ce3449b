"""Process-level tests follow ``--db``: PostgreSQL with --db=postgresql, else SQLite in the data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.databases import process_database_url


def test_process_database_url_follows_the_db_option(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    url = process_database_url(tmp_path / "a")
    if pytestconfig.getoption("--db") == "postgresql":
        assert url is not None and url.startswith("postgresql")
        assert process_database_url(tmp_path / "a") == url  # a restart on the same dir: the same database
        assert process_database_url(tmp_path / "b") != url
    else:
        assert url is None
