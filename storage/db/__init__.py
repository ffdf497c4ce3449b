"""The index database: the engine (SQLite WAL or PostgreSQL), the tables, and the Alembic migrations."""
