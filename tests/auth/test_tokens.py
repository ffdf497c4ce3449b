"""Sign-in, token expiry and revocation, refresh, stream tokens, API keys over HTTP, rate limits."""

from __future__ import annotations

from fastapi import APIRouter

from streams.access.guard import Principal, allow
from streams.access.ratelimit import SignInLimiter
from tests.auth.conftest import PASSWORD, FakeClock, World


def sign_in(world: World, name: str, password: str = PASSWORD, ip_headers: dict | None = None):  # type: ignore[no-untyped-def]
    return world.client.post("/api/auth/token", json={"username": name, "password": password}, headers=ip_headers or {})


def test_sign_in_and_me(world: World) -> None:
    r = sign_in(world, "viewer")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 15 * 60
    me = world.client.get("/api/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json() == {"name": "viewer", "role": "viewer", "regions": ["t1"], "via": "token"}


def test_wrong_password_unknown_user_and_disabled_answer_alike(world: World) -> None:
    world.users.disable("operator")
    answers = [sign_in(world, "viewer", "wrong password"), sign_in(world, "ghost"), sign_in(world, "operator")]
    assert {(a.status_code, a.json()["detail"]) for a in answers} == {(401, "wrong user name or password")}


def test_access_token_expires_after_15_minutes(world: World) -> None:
    token = sign_in(world, "viewer").json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    world.clock.advance(15 * 60 - 1)
    assert world.client.get("/api/me", headers=auth).status_code == 200
    world.clock.advance(1)
    r = world.client.get("/api/me", headers=auth)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_refresh_gives_new_tokens_and_refuses_access_tokens(world: World) -> None:
    pair = sign_in(world, "viewer").json()
    world.clock.advance(13 * 3600)
    r = world.client.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 200
    new, rotated = r.json()["access_token"], r.json()["refresh_token"]
    assert world.client.get("/api/me", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    # An access token is not a refresh token, and a refresh token is not an access token.
    assert world.client.post("/api/auth/refresh", json={"refresh_token": new}).status_code == 401
    r = world.client.get("/api/me", headers={"Authorization": f"Bearer {pair['refresh_token']}"})
    assert r.status_code == 401
    # The rotated refresh token runs out after 7 days like the first.
    world.clock.advance(7 * 24 * 3600)
    assert world.client.post("/api/auth/refresh", json={"refresh_token": rotated}).status_code == 401


def test_passwd_and_disable_revoke_tokens(world: World) -> None:
    v = world.headers("viewer")
    i = world.headers("investigator")
    world.clock.advance(1)
    world.users.passwd("viewer", "another password")
    world.users.disable("investigator")
    assert world.client.get("/api/me", headers=v).status_code == 401
    assert world.client.get("/api/me", headers=i).status_code == 401
    world.clock.advance(1)
    assert world.client.get("/api/me", headers=world.headers("viewer")).status_code == 200


def test_tampered_token_refused(world: World) -> None:
    token = world.token("viewer")
    body, _, sig = token.partition(".")
    forged = world.token("admin").partition(".")[0] + "." + sig
    assert world.client.get("/api/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert world.client.get("/api/me", headers={"Authorization": "Bearer garbage"}).status_code == 401


def test_role_change_applies_to_existing_tokens(world: World) -> None:
    h = world.headers("viewer")
    assert world.client.get("/api/users", headers=h).status_code == 403
    world.users.set_role("viewer", "admin")
    assert world.client.get("/api/users", headers=h).status_code == 200


def test_api_keys_over_http_are_revocable(world: World) -> None:
    admin = world.headers("admin")
    r = world.client.post("/api/keys", headers=admin, json={"name": "bridge", "role": "viewer", "regions": ["t1"]})
    assert r.status_code == 201, r.text
    key, key_id = r.json()["key"], r.json()["id"]
    listed = world.client.get("/api/keys", headers=admin).json()
    assert all("key" not in k for k in listed) and key not in str(listed)
    auth = {"Authorization": f"Bearer {key}"}
    assert world.client.get("/api/me", headers=auth).json()["role"] == "viewer"
    assert world.client.delete(f"/api/keys/{key_id}", headers=admin).status_code == 200
    assert world.client.get("/api/me", headers=auth).status_code == 401


def _hls_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/cameras/{id}/test.m3u8")
    def playlist(id: str, principal: Principal = allow("viewer", query_token=True)) -> dict[str, str]:
        return {"camera": id, "user": principal.name}

    return router


def test_stream_tokens_only_on_declared_routes_and_one_camera(world: World) -> None:
    world.app.include_router(_hls_router())  # type: ignore[attr-defined]
    world.users.set_role("viewer", "viewer", ["*"])
    r = world.client.post("/api/cameras/cam-in/stream-token", headers=world.headers("viewer"))
    assert r.status_code == 200 and r.json()["expires_in"] == 15 * 60
    token = r.json()["token"]
    assert world.client.get(f"/api/cameras/cam-in/test.m3u8?token={token}").json() == {"camera": "cam-in", "user": "viewer"}
    # Bound to one camera.
    assert world.client.get(f"/api/cameras/cam-out/test.m3u8?token={token}").status_code == 401
    # Not accepted on routes that did not declare query_token, nor as a bearer token.
    assert world.client.get(f"/api/me?token={token}").status_code == 401
    assert world.client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # An access token is not accepted in the query string.
    assert world.client.get(f"/api/cameras/cam-in/test.m3u8?token={world.token('viewer')}").status_code == 401
    world.clock.advance(15 * 60)
    assert world.client.get(f"/api/cameras/cam-in/test.m3u8?token={token}").status_code == 401


def test_stream_token_out_of_scope_is_404(world: World) -> None:
    r = world.client.post("/api/cameras/cam-out/stream-token", headers=world.headers("viewer"))
    assert r.status_code == 404


def test_limiter_backs_off_per_account_and_windows_per_address() -> None:
    clock = FakeClock()
    lim = SignInLimiter(per_ip=5, window_s=60, free_failures=3, max_backoff_s=8, clock=clock.seconds)
    for n in range(3):
        assert lim.retry_after("bob", f"1.1.1.{n}") is None
        lim.failure("bob", f"1.1.1.{n}")
    # The fourth failure from anywhere waits 1 s, then 2, 4, 8, and never more than 8.
    assert lim.retry_after("bob", "9.9.9.9") == 1
    assert lim.retry_after("alice", "2.2.2.2") is None
    for wait in (1, 2, 4, 8, 8):
        clock.advance(wait)
        assert lim.retry_after("bob", "9.9.9.9") is None
        lim.failure("bob", "9.9.9.9")
    # Per IP: spraying many names from one address.
    for n in range(5):
        lim.failure(f"user{n}", "3.3.3.3")
    assert lim.retry_after("someone-else", "3.3.3.3") is not None
    lim.success("someone-else", "3.3.3.3")
    assert lim.retry_after("other", "3.3.3.3") is not None


def test_sign_in_backs_off_per_user(world: World) -> None:
    for _ in range(5):
        assert sign_in(world, "viewer", "wrong password").status_code == 401
    r = sign_in(world, "viewer")  # even the right password waits, but only a second
    assert r.status_code == 429 and int(r.headers["Retry-After"]) == 1
    assert sign_in(world, "investigator").status_code == 200
    world.clock.advance(1)
    assert sign_in(world, "viewer").status_code == 200
    rows = world.audit.query(action="sign_in_failed", newest_first=False)
    assert [r.outcome for r in rows] == ["failed"] * 5 + ["rate_limited"]
