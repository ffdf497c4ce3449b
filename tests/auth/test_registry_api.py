"""The registry API: scoped lists, audited writes, and the retention floor kept by admins."""

from __future__ import annotations

from tests.auth.conftest import CAMERA_PASSWORD, World


def test_operator_adds_edits_and_removes_a_camera_with_audit_rows(world: World) -> None:
    h = world.headers("operator")
    body = {"id": "cam-new", "name": "New", "region": "v1", "main_url": "rtsp://u:pw9@10.0.0.9/x"}
    r = world.client.post("/api/cameras", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert "pw9" not in r.text and r.json()["main_url"] == "rtsp://***@10.0.0.9/x"
    r = world.client.patch("/api/cameras/cam-new", json={"name": "Renamed"}, headers=h)
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    assert world.client.delete("/api/cameras/cam-new", headers=h).status_code == 204
    actions = [e.action for e in world.audit.query(camera_id="cam-new", newest_first=False)]
    assert actions == ["camera_add", "camera_edit", "camera_remove"]


def test_bad_camera_body_is_422_with_the_reason(world: World) -> None:
    h = world.headers("operator")
    r = world.client.post("/api/cameras", json={"id": "x", "name": "X", "region": "v1", "main_url": "http://h/x"}, headers=h)
    assert r.status_code == 422 and "rtsp://" in r.text


def test_lists_show_only_the_callers_scope_and_never_a_password(world: World) -> None:
    r = world.client.get("/api/cameras", headers=world.headers("viewer"))
    assert [c["id"] for c in r.json()] == ["cam-in"]
    assert CAMERA_PASSWORD not in r.text
    codes = {g["code"] for g in world.client.get("/api/regions", headers=world.headers("viewer")).json()}
    assert codes == {"t1", "v1"}
    county = next(g for g in world.client.get("/api/regions", headers=world.headers("admin")).json() if g["code"] == "county")
    assert county["cameras"] == 2


def test_retention_below_the_floor_needs_an_admin(world: World) -> None:
    change = {"retention_days": 7, "retention_override": True}
    r = world.client.patch("/api/cameras/cam-in", json=change, headers=world.headers("operator"))
    assert r.status_code == 403 and "admin" in r.text
    r = world.client.patch("/api/cameras/cam-in", json={"retention_days": 7}, headers=world.headers("operator"))
    assert r.status_code == 422 and "30" in r.text
    r = world.client.patch("/api/cameras/cam-in", json=change, headers=world.headers("admin"))
    assert r.status_code == 200 and r.json()["retention_days"] == 7


def test_a_number_past_64_bits_is_the_callers_mistake_not_a_server_error(world: World) -> None:
    r = world.client.delete("/api/keys/9223372036854775808", headers=world.headers("admin"))
    assert r.status_code == 422 and "out of range" in r.text
