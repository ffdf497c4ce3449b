"""The audit trail: hash chain, tamper detection, concurrency, export, query, the admin route."""

from __future__ import annotations

import csv
import io
import threading

import pytest
from sqlalchemy import text

from streams.access.audit import AuditLog
from tests.auth.conftest import World


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append(user=f"u{i % 3}", role="investigator", client_ip="10.1.1.1", action="playback",
                   camera_id="cam-in", range_start_us=i * 1000, range_end_us=i * 1000 + 500, detail=f"row {i}")


def test_chain_verifies(world: World) -> None:
    _fill(world.audit, 20)
    result = world.audit.verify()
    assert result.ok and result.rows_checked == 20
    assert world.audit.head() == world.audit.query(limit=1)[0].hash


def test_raw_update_is_found_and_named(world: World) -> None:
    _fill(world.audit, 10)
    target = world.audit.query(newest_first=False)[6].id
    with world.engine.begin() as c:  # type: ignore[attr-defined]
        c.execute(text("UPDATE audit SET detail = 'nothing to see' WHERE id = :id"), {"id": target})
    result = world.audit.verify()
    assert not result.ok and result.bad_row_id == target and "altered" in result.reason
    assert result.rows_checked == 6


def test_rehashed_update_is_found_at_the_next_row(world: World) -> None:
    # A forger who also recomputes the row's own hash still breaks the next link.
    _fill(world.audit, 5)
    rows = world.audit.query(newest_first=False)
    with world.engine.begin() as c:  # type: ignore[attr-defined]
        c.execute(text("UPDATE audit SET hash = :h WHERE id = :id"), {"h": "f" * 64, "id": rows[2].id})
    assert world.audit.verify().bad_row_id == rows[2].id
    with world.engine.begin() as c:  # type: ignore[attr-defined]
        c.execute(text("DELETE FROM audit WHERE id = :id"), {"id": rows[2].id})
    result = world.audit.verify()
    assert result.bad_row_id == rows[3].id and "removed" in result.reason


def test_concurrent_appends_keep_one_chain(world: World) -> None:
    logs = [AuditLog(world.engine) for _ in range(4)]
    errors: list[BaseException] = []

    def work(log: AuditLog) -> None:
        try:
            _fill(log, 15)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = world.audit.verify()
    assert result.ok and result.rows_checked == 60


def test_unknown_action_refused(world: World) -> None:
    with pytest.raises(ValueError, match="add it to streams.access.audit.ACTIONS"):
        world.audit.append(user="x", role="viewer", client_ip="-", action="watch")


def test_detail_is_redacted(world: World) -> None:
    row = world.audit.append(user="x", role="operator", client_ip="-", action="camera_add",
                             detail="rtsp://admin:hunter22@10.0.0.1/live")
    assert "hunter22" not in row.detail and "***@" in row.detail


def test_export_csv_and_query_filters(world: World) -> None:
    _fill(world.audit, 9)
    world.clock.advance(10)
    world.audit.append(user="later", role="admin", client_ip="-", action="user_add")
    text_out = world.audit.export_csv_text(until_us=world.clock.us())
    rows = list(csv.DictReader(io.StringIO(text_out)))
    assert len(rows) == 9 and rows[0]["detail"] == "row 0" and len(rows[0]["hash"]) == 64
    assert [r.user for r in world.audit.query(user="u1")] == ["u1"] * 3
    assert len(world.audit.query(action="user_add")) == 1
    page1 = world.audit.query(limit=4)
    page2 = world.audit.query(limit=4, before_id=page1[-1].id)
    assert page2[0].id == page1[-1].id - 1


def test_audit_route_is_admin_only_and_filters(world: World) -> None:
    _fill(world.audit, 3)
    r = world.client.get("/api/audit", params={"user": "u0"}, headers=world.headers("admin"))
    assert r.status_code == 200 and [row["user"] for row in r.json()] == ["u0"]
    assert world.client.get("/api/audit", headers=world.headers("operator")).status_code == 403
    # No route edits or deletes audit rows.
    from streams.access.guard import walk_routes

    for route in walk_routes(world.app):  # type: ignore[arg-type]
        if (getattr(route, "path", "") or "").startswith("/api/audit"):
            assert route.methods <= {"GET", "HEAD"}


def test_session_writes_expected_rows(world: World) -> None:
    c = world.client
    token = c.post("/api/auth/token", json={"username": "admin", "password": "correct horse battery"}).json()["access_token"]
    h = {"Authorization": f"Bearer {token}"}
    c.post("/api/auth/token", json={"username": "admin", "password": "nope nope"})
    assert c.post("/api/users", headers=h, json={"name": "carol", "password": "carols password", "role": "viewer", "regions": ["v1"]}).status_code == 201
    c.post("/api/users/carol/passwd", headers=h, json={"password": "another one!"})
    c.post("/api/users/carol/disable", headers=h)
    got = [(r.user, r.action, r.outcome, r.detail) for r in world.audit.query(newest_first=False)]
    assert got == [
        ("admin", "sign_in", "ok", ""),
        ("admin", "sign_in_failed", "failed", ""),
        ("admin", "user_add", "ok", "target=carol role=viewer regions=v1"),
        ("admin", "user_passwd", "ok", "target=carol"),
        ("admin", "user_disable", "ok", "target=carol"),
    ]
    assert all(r.client_ip == "testclient" for r in world.audit.query())
    assert world.audit.verify().ok
