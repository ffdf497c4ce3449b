"""Finding 11: truncating, rewriting (with re-hashing) or deleting audit rows is detected.

Rows come from a real server (sign-ins over HTTP); the server signs checkpoints and anchors
them in its object store. Then the database is tampered with as its owner could, in a copy
per case, and the real CLI (``sharpeyes audit verify``) must name the first bad row or the
missing range.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from config.settings import Settings
from storage.db.engine import open_engine
from storage.index.credentials import load_cipher
from storage.index.registry import Registry
from storage.index.segments import SegmentIndex
from storage.objects.open import open_object_store
from streams.access.audit import GENESIS, AuditLog, row_hash
from streams.access.guard import AuthState
from streams.access.tokens import TokenSigner
from streams.access.users import UserStore
from streams.app import create_app
from streams.context import AppContext
from tests.support.cameras import free_port
from tests.support.http import UvicornThread

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("time_us", "user", "role", "client_ip", "action", "camera_id", "range_start_us", "range_end_us",
          "outcome", "detail")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A data dir whose audit chain has 12 rows, anchored (the last checkpoint covers all 12)."""
    data = tmp_path_factory.mktemp("audit")
    settings = Settings(data_dir=data, audit_checkpoint_seconds=3600)
    engine = open_engine(settings.database_url)
    cipher = load_cipher(data)
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("inv", "investigator pw 1", "investigator", ["*"])
    state = AuthState(users=users, audit=AuditLog(engine),
                      tokens=TokenSigner(cipher.derive("sharpeyes token signing v1")))
    ctx = AppContext(settings=settings, index=SegmentIndex(engine), registry=Registry(engine, cipher),
                     store=open_object_store(settings), auth=state)
    port = free_port()
    server = UvicornThread(create_app(ctx), port, settings).start()
    for n in range(12):
        password = "investigator pw 1" if n % 3 else "wrong"
        httpx.post(f"http://127.0.0.1:{port}/api/auth/token", json={"username": "inv", "password": password},
                   timeout=30)
    server.stop()  # the server anchors its last rows on the way out
    engine.dispose()
    return data


def _copy(recorded: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(recorded, target)
    return target


def _verify(data: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), SHARPEYES_DATA_DIR=str(data))
    env.pop("SHARPEYES_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "sharpeyes.cli", "audit", "verify"], env=env, capture_output=True,
                          text=True, timeout=120)


def _db(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / "index.db")


def _rehash_from(db: sqlite3.Connection, first_id: int) -> None:
    """What an owner who knows the scheme does: recompute every hash from ``first_id`` on."""
    rows = db.execute(f"select id, prev_hash, {', '.join(FIELDS)} from audit order by id").fetchall()
    prev = GENESIS
    for row in rows:
        rid, values = row[0], dict(zip(FIELDS, row[2:]))
        if rid >= first_id:
            new = row_hash(prev, values)
            db.execute("update audit set prev_hash = ?, hash = ? where id = ?", (f"tmp{rid}", new, rid))
            db.execute("update audit set prev_hash = ? where id = ?", (prev, rid))
            prev = new
        else:
            prev = db.execute("select hash from audit where id = ?", (rid,)).fetchone()[0]
    db.commit()


def test_f11_the_untampered_chain_verifies(recorded: Path, tmp_path: Path) -> None:
    data = _copy(recorded, tmp_path)
    done = _verify(data)
    assert done.returncode == 0, done.stderr
    assert "12 rows" in done.stdout and "checkpoint" in done.stdout
    anchors = list((data / "objects" / "audit" / "anchors").glob("*.json"))
    assert anchors and json.loads(anchors[-1].read_text())["audit_id"] == 12


def test_f11_truncation_is_detected_even_with_the_checkpoints_table_emptied(recorded: Path, tmp_path: Path) -> None:
    data = _copy(recorded, tmp_path)
    with _db(data) as db:
        db.execute("delete from audit where id > 9")
        db.execute("delete from audit_checkpoints")
    done = _verify(data)
    assert done.returncode == 1
    assert "rows 10..12 missing" in done.stderr, done.stderr


def test_f11_a_rewrite_with_rehash_names_the_row(recorded: Path, tmp_path: Path) -> None:
    data = _copy(recorded, tmp_path)
    with _db(data) as db:
        db.execute("update audit set user = 'someone-else' where id = 5")
        _rehash_from(db, 5)
    assert AuditLog(open_engine(f"sqlite:///{data / 'index.db'}")).verify().ok  # the chain alone is fooled
    done = _verify(data)
    assert done.returncode == 1 and "at row 5" in done.stderr, done.stderr


@pytest.mark.parametrize("rehash", [False, True])
def test_f11_a_deleted_row_names_the_missing_range(recorded: Path, tmp_path: Path, rehash: bool) -> None:
    data = _copy(recorded, tmp_path)
    with _db(data) as db:
        db.execute("delete from audit where id in (6, 7)")
        if rehash:
            _rehash_from(db, 8)
    done = _verify(data)
    assert done.returncode == 1 and "rows 6..7 missing" in done.stderr, done.stderr


def test_f11_an_export_manifest_carries_a_signed_anchor(recorded: Path, tmp_path: Path) -> None:
    """The anchor kept with the evidence is enough on its own: database and store both rewritten."""
    data = _copy(recorded, tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), SHARPEYES_DATA_DIR=str(data))
    made = subprocess.run([sys.executable, "-m", "sharpeyes.cli", "audit", "checkpoint"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    anchor = sorted((data / "objects" / "audit" / "anchors").glob("*.json"))[-1]
    kept = tmp_path / "manifest.json"
    kept.write_text(json.dumps({"audit_anchor": json.loads(anchor.read_text())}))
    shutil.rmtree(data / "objects" / "audit")
    with _db(data) as db:
        db.execute("delete from audit where id > 10")
        db.execute("delete from audit_checkpoints")
    assert _verify(data).returncode == 0  # nothing left on site to tell
    done = subprocess.run([sys.executable, "-m", "sharpeyes.cli", "audit", "verify", "--anchor", str(kept)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "rows 11..12 missing" in done.stderr, done.stderr
