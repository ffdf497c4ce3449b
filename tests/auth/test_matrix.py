"""The authorization matrix, taken from the app's own route table.

Every route must declare a rule (``allow``/``public`` in ``streams.access.guard``): a new
route without one fails ``test_every_route_declares_a_rule``. Then every routed
request is tried as anonymous and as each role, against an in-scope, an
out-of-scope and an unknown camera, and the answer must match the declared rule.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from config.cameras import Camera
from streams.access.users import ROLES
from streams.access.guard import route_rule, walk_routes
from tests.auth.conftest import CAMERA_PASSWORD, World

# Routes anyone may call. Each still declares public(), except the framework's docs.
# "/" and "/web/{path:path}" are the web console's static files (streams/console/routes.py).
# "/openapi.json" and "/docs" are routes of ours (streams/app.py), public on purpose: no data.
PUBLIC = {"/api/ping", "/api/auth/token", "/api/auth/refresh", "/api/keys/export", "/", "/web/{path:path}",
          "/openapi.json", "/docs"}
FRAMEWORK: set[str] = set()

# The rules of the routes this module's authors know about; a changed rule must change here too.
EXPECTED = {
    ("GET", "/api/me"): "user",
    ("POST", "/api/cameras/{id}/stream-token"): "viewer",
    ("GET", "/api/users"): "admin",
    ("POST", "/api/users"): "admin",
    ("POST", "/api/users/{name}/passwd"): "admin",
    ("POST", "/api/users/{name}/disable"): "admin",
    ("POST", "/api/users/{name}/enable"): "admin",
    ("GET", "/api/keys"): "admin",
    ("POST", "/api/keys"): "admin",
    ("DELETE", "/api/keys/{key_id}"): "admin",
    ("GET", "/api/audit"): "admin",
    ("GET", "/api/health"): "operator",
    ("GET", "/metrics"): "operator",
    ("POST", "/api/auth/signout"): "user",
    ("PATCH", "/api/users/{name}"): "admin",
    ("GET", "/api/health/fleet"): "operator",
    ("GET", "/api/gb/devices"): "operator",
    ("POST", "/api/gb/devices/{device_id}/refresh"): "operator",
}

IN_SCOPE, OUT_OF_SCOPE, UNKNOWN = "cam-in", "cam-out", "cam-zzz"  # same length: identical 404s


def _original(route):  # type: ignore[no-untyped-def]
    return getattr(route, "original_route", route)


def _api_routes(app):  # type: ignore[no-untyped-def]
    return [r for r in walk_routes(app) if isinstance(_original(r), APIRoute)]


def _unruled(app) -> list[str]:  # type: ignore[no-untyped-def]
    missing = []
    for route in walk_routes(app):
        path = getattr(route, "path", "") or ""
        kind = _original(route)
        if isinstance(kind, (APIRoute, APIWebSocketRoute)):
            rule = route_rule(route)
            if rule is None:
                missing.append(f"{sorted(getattr(route, 'methods', None) or ['WS'])} {path}")
                continue
            if rule.role == "public":
                assert path in PUBLIC, f"{path} declares public() but is not in the PUBLIC list of this test"
            if rule.camera_param is not None:
                assert "{" + rule.camera_param in path, f"{path}: camera_param {rule.camera_param!r} is not a path parameter"
        elif isinstance(kind, Route) and path in FRAMEWORK:
            continue
        elif isinstance(kind, Mount):
            missing.append(f"mount {path}: static mounts must be listed here on purpose")
        else:
            missing.append(f"{type(kind).__name__} {path}")
    return missing


def test_every_route_declares_a_rule(world: World) -> None:
    missing = _unruled(world.app)
    assert not missing, "routes without an authorization rule:\n" + "\n".join(missing)
    for path in PUBLIC:
        assert any(getattr(r, "path", None) == path for r in _api_routes(world.app)), f"{path} is gone"


def test_a_route_without_a_rule_is_caught(world: World) -> None:
    from fastapi import APIRouter

    router = APIRouter(prefix="/api/x")

    @router.get("/cameras/{id}/forgotten")
    def forgotten(id: str) -> dict[str, str]:
        return {}

    world.app.include_router(router)  # type: ignore[attr-defined]
    assert _unruled(world.app) == ["['GET'] /api/x/cameras/{id}/forgotten"]


def test_known_routes_have_expected_rules(world: World) -> None:
    found = {}
    for route in _api_routes(world.app):
        for method in route.methods - {"HEAD"}:
            found[(method, route.path)] = route_rule(route).role  # type: ignore[union-attr]
    for key, role in EXPECTED.items():
        assert found.get(key) == role, f"{key}: expected rule {role}, found {found.get(key)}"


def _restore(world: World) -> None:
    """Put back what a permitted request may have changed (a camera removed, a user disabled)."""
    for cid, region in ((IN_SCOPE, "v1"), (OUT_OF_SCOPE, "t2")):
        if world.registry.camera(cid) is None:
            world.registry.add_camera(Camera(id=cid, name=cid, region=region, main_url="rtsp://10.0.0.9/main"))
    for role in ROLES:
        world.users.enable(role)
        world.users.set_role(role, role, ["*"] if role == "admin" else ["t1"])


def _path(route, camera: str | None) -> str:  # type: ignore[no-untyped-def]
    rule = route_rule(route)
    def fill(m: re.Match[str]) -> str:
        name = m.group(1).split(":")[0]
        return camera if (rule and name == rule.camera_param and camera) else "999999"
    return re.sub(r"\{([^}]+)\}", fill, route.path)


def test_authorization_matrix(world: World) -> None:
    client = TestClient(world.app, raise_server_exceptions=False)  # type: ignore[arg-type]
    tokens = {role: world.token(role) for role in ROLES}
    checked = 0
    for route in _api_routes(world.app):
        rule = route_rule(route)
        assert rule is not None
        if rule.role == "public":
            continue
        method = sorted(route.methods - {"HEAD"})[0]
        cameras = [UNKNOWN, OUT_OF_SCOPE, IN_SCOPE] if rule.camera_param else [None]
        for who in [None, *ROLES]:
            not_found_bodies = {}
            for camera in cameras:
                headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
                kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                r = client.request(method, _path(route, camera), headers=headers, **kwargs)
                _restore(world)
                checked += 1
                where = f"{method} {route.path} as {who or 'anonymous'} camera={camera}: {r.status_code} {r.text[:200]}"
                assert CAMERA_PASSWORD not in r.text, where
                if who is None:
                    assert r.status_code == 401, where
                elif not rule.admits(who):
                    assert r.status_code == 403, where
                elif camera == UNKNOWN or (camera == OUT_OF_SCOPE and who != "admin"):
                    assert r.status_code == 404, where
                    not_found_bodies[camera] = (r.status_code, r.text.replace(camera, "ID"), sorted(r.headers.items()))
                else:
                    assert r.status_code not in (401, 403), where
                    if camera is not None and "999999" in _path(route, camera):
                        # A sub-resource (a hold id) filled with 999999 may be missing: the
                        # answer may be 404, but not the camera's.
                        assert "is not registered" not in r.text, where
                    elif camera is not None:
                        assert r.status_code != 404, where
            if len(not_found_bodies) == 2:
                assert not_found_bodies[UNKNOWN] == not_found_bodies[OUT_OF_SCOPE], f"{route.path}: out of scope differs from unknown"
    assert checked > 50


@pytest.mark.parametrize("role", ROLES)
def test_region_scope_covers_sub_regions(world: World, role: str) -> None:
    # Scope t1 covers village v1 below it: cam-in is visible, cam-out (t2) is not.
    r = world.client.post(f"/api/cameras/{IN_SCOPE}/stream-token", headers=world.headers(role))
    assert r.status_code == 200
    r = world.client.post(f"/api/cameras/{OUT_OF_SCOPE}/stream-token", headers=world.headers(role))
    assert r.status_code == (200 if role == "admin" else 404)
