"""pytest plugin: the index database on SQLite and on PostgreSQL.

Fixtures:
- ``database_url``: an SQLAlchemy URL of an empty database, parametrized over the
  back ends chosen with ``--db=sqlite|postgresql|both`` (default ``both``). SQLite
  is a file in the test's tmp dir; PostgreSQL is a database created for the test
  (``sharpeyes_test_<random>``) and dropped after it, so concurrent runs never
  share tables. PostgreSQL tests are skipped, with the reason, when the server
  at ``--pg-url`` (or ``$SHARPEYES_TEST_PG_URL``) does not answer.
- ``db_backend``: ``"sqlite"`` or ``"postgresql"``, the current parameter.
- ``index_engine``: ``storage.open_engine(database_url)``, migrated, disposed after.

Use ``database_url`` (or ``index_engine``) in any test to run it on both back ends.

Process-level tests (those that build ``Settings``, e.g. ``tests.support.recording.Recorder``)
call ``process_database_url(data_dir)``: None (SQLite in ``data_dir``) unless the run is
``--db=postgresql``, then a PostgreSQL database tied to ``data_dir`` (the same one when a
test restarts a process on the same directory), dropped at the end of the session.
With ``--db=both`` they run once, on SQLite: both would double their minutes.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

BACKENDS = ("sqlite", "postgresql")
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sharpeyes databases")
    group.addoption(
        "--db",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="index database back end(s) for tests using database_url (default: both)",
    )
    group.addoption(
        "--pg-url",
        default=os.environ.get("SHARPEYES_TEST_PG_URL", DEFAULT_PG_URL),
        help="SQLAlchemy URL of a PostgreSQL maintenance database where test databases "
        f"may be created (default: $SHARPEYES_TEST_PG_URL or {DEFAULT_PG_URL})",
    )


_process_db: dict[str, object] = {"backend": "sqlite", "admin": None, "created": {}}


def pytest_configure(config: pytest.Config) -> None:
    _process_db["backend"] = config.getoption("--db", default="both")
    _process_db["admin"] = PostgresAdmin(str(config.getoption("--pg-url", default=DEFAULT_PG_URL)))


def pytest_unconfigure(config: pytest.Config) -> None:
    admin = _process_db["admin"]
    created: dict[str, str] = _process_db["created"]  # type: ignore[assignment]
    for name in created.values():
        admin.drop(name)  # type: ignore[union-attr]
    created.clear()


def process_database_url(data_dir: Path) -> str | None:
    """The index URL a process-level test should use for ``data_dir`` (see module docstring)."""
    if _process_db["backend"] != "postgresql":
        return None
    admin: PostgresAdmin = _process_db["admin"]  # type: ignore[assignment]
    reason = admin.unavailable_reason()
    if reason:
        pytest.skip(reason)
    created: dict[str, str] = _process_db["created"]  # type: ignore[assignment]
    key = str(Path(data_dir).resolve())
    if key not in created:
        created[key] = admin.create()
    return admin.url_for(created[key])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrize here rather than with fixture params so that --db deselects
    # the other back end instead of reporting half the suite as skipped.
    if "db_backend" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--db")
        backends = BACKENDS if choice == "both" else (choice,)
        metafunc.parametrize("db_backend", backends, indirect=True, scope="function")


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


class PostgresAdmin:
    """Creates and drops throw-away databases through the maintenance database."""

    def __init__(self, url: str):
        from sqlalchemy.engine import make_url

        self.url = make_url(url)
        self._error: str | None = None
        self._probed = False

    def _connect(self):  # type: ignore[no-untyped-def]
        import psycopg

        u = self.url
        return psycopg.connect(
            host=u.host or "127.0.0.1",
            port=u.port or 5432,
            user=u.username or "postgres",
            password=u.password,
            dbname=u.database or "postgres",
            autocommit=True,  # CREATE/DROP DATABASE cannot run in a transaction
            connect_timeout=3,
        )

    def unavailable_reason(self) -> str | None:
        """None when the server answers, else why not (probed once per session)."""
        if not self._probed:
            self._probed = True
            try:
                with self._connect() as conn:
                    conn.execute("SELECT 1")
            except Exception as exc:  # any failure means "not usable here"
                where = self.url.render_as_string(hide_password=True)
                self._error = (
                    f"PostgreSQL at {where} is not reachable ({type(exc).__name__}: {exc}); "
                    "use --db=sqlite or --pg-url"
                )
        return self._error

    def create(self) -> str:
        name = f"sharpeyes_test_{uuid.uuid4().hex[:12]}"
        with self._connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop(self, name: str) -> None:
        with self._connect() as conn:
            # FORCE (PostgreSQL 13+) ends connections a test leaked instead of failing.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def url_for(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_admin(pytestconfig: pytest.Config) -> PostgresAdmin:
    return PostgresAdmin(str(pytestconfig.getoption("--pg-url")))


@pytest.fixture
def database_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty index database for this test only (see module docstring)."""
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.db'}"
        return
    yield request.getfixturevalue("postgres_url")


@pytest.fixture
def postgres_url(postgres_admin: PostgresAdmin) -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped after it (skipped without a server)."""
    reason = postgres_admin.unavailable_reason()
    if reason:
        pytest.skip(reason)
    name = postgres_admin.create()
    try:
        yield postgres_admin.url_for(name)
    finally:
        postgres_admin.drop(name)


@pytest.fixture
def index_engine(database_url: str):  # type: ignore[no-untyped-def]
    """A migrated engine on ``database_url``; disposed after the test."""
    from storage.db.engine import open_engine

    engine = open_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()
