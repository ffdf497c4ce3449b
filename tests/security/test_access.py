"""Findings 3, 4, 8, 13, 14: who may see and change what, and for how long."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from streams.access.tokens import TokenSigner
from tests.live.whep_client import close, wait_frames, whep_connect
from tests.security.conftest import PASSWORD, SecurityWorld, Viewer


def _wait(cond, timeout: float = 10.0, step: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


# -- finding 3: live sessions end with the user's rights ----------------------------------


@pytest.mark.parametrize("change", ["disable", "passwd", "scope"])
def test_f03_mse_ends_when_the_user_is_disabled_repassworded_or_narrowed(world: SecurityWorld, change: str) -> None:
    name = world.new_user("viewer")
    viewer = world.viewer(name)
    admin = world.headers("admin")
    if change == "disable":
        r = httpx.post(f"{world.base}/api/users/{name}/disable", headers=admin, timeout=10)
    elif change == "passwd":
        r = httpx.post(f"{world.base}/api/users/{name}/passwd", json={"password": "another pass 1"}, headers=admin,
                       timeout=10)
    else:
        r = httpx.patch(f"{world.base}/api/users/{name}", json={"role": "viewer", "regions": ["t2"]}, headers=admin,
                        timeout=10)
    assert r.status_code == 200, r.text
    changed = time.monotonic()
    assert _wait(lambda: viewer.closed is not None, 5), "the MSE viewer kept receiving after the change"
    frames_after = [t for t in viewer.arrivals if t > changed + 0.5]
    assert not frames_after
    viewer.stop()


def test_f03_a_change_made_elsewhere_ends_the_view_within_seconds(world: SecurityWorld) -> None:
    """Disabled on another node (here: straight in the database): the sweep finds it."""
    name = world.new_user("viewer")
    viewer = world.viewer(name)
    world.users.disable(name)
    assert _wait(lambda: viewer.closed is not None, 5)
    viewer.stop()


def test_f03_whep_ends_when_the_user_is_disabled(world: SecurityWorld) -> None:
    name = world.new_user("viewer")
    headers = world.headers(name)

    async def main() -> None:
        async with httpx.AsyncClient(timeout=20) as client:
            rx = await whep_connect(client, f"{world.base}/api/cameras/cam1/whep", headers)
            assert not isinstance(rx, httpx.Response), rx.text
            await wait_frames(rx, 5)
            r = await client.post(f"{world.base}/api/users/{name}/disable", headers=world.headers("admin"))
            assert r.status_code == 200
            for _ in range(50):
                if rx.pc.connectionState in ("closed", "failed") or not [
                        s for s in world.ctx.live.whep.values() if s.view and s.view.user == name]:
                    break
                await asyncio.sleep(0.1)
            assert not [s for s in world.ctx.live.whep.values() if s.view and s.view.user == name]
            await close(rx)

    asyncio.run(main())


def test_f03_a_view_ends_when_its_stream_token_expires_unless_renewed(world: SecurityWorld) -> None:
    name = world.new_user("viewer")
    short = TokenSigner(world.state.tokens._key, stream_ttl_s=2)  # the server's key, a 2-second token
    headers = world.headers(name)
    me = httpx.get(f"{world.base}/api/me", headers=headers, timeout=10)
    assert me.status_code == 200
    token, _ = short.issue("stream", name, camera_id="cam1")
    expiring = Viewer(f"{world.ws_base}/api/cameras/cam1/live.mp4?token={token}").start()
    assert _wait(lambda: expiring.closed is not None, 6), "the view outlived its stream token"
    expiring.stop()

    async def renewing() -> int:
        import websockets

        token, _ = short.issue("stream", name, camera_id="cam1")
        frames = 0
        async with websockets.connect(f"{world.ws_base}/api/cameras/cam1/live.mp4?token={token}") as ws:
            deadline = time.monotonic() + 5
            renewed = time.monotonic()
            while time.monotonic() < deadline:
                if time.monotonic() - renewed > 1:
                    fresh, _ = short.issue("stream", name, camera_id="cam1")
                    await ws.send('{"type": "renew", "token": "%s"}' % fresh)
                    renewed = time.monotonic()
                msg = await asyncio.wait_for(ws.recv(), 2)
                frames += isinstance(msg, bytes)
        return frames

    assert asyncio.run(renewing()) > 50  # 5 s at 25 fps, on past the first token's 2 s


# -- finding 4: a change needs both the old and the new place in scope --------------------


def test_f04_operator_cannot_move_a_camera_out_of_scope_or_plant_regions(world: SecurityWorld) -> None:
    op = world.headers("operator")  # scope t1
    r = httpx.patch(f"{world.base}/api/cameras/cam1", json={"region": "t2"}, headers=op, timeout=10)
    assert r.status_code == 403 and "outside your scope" in r.json()["detail"]
    assert world.registry.camera("cam1").region == "t1"  # type: ignore[union-attr]
    r = httpx.patch(f"{world.base}/api/cameras/cam2", json={"region": "t1"}, headers=op, timeout=10)
    assert r.status_code == 404  # not the operator's camera: like an unknown one
    for parent in ("t2", None):
        r = httpx.post(f"{world.base}/api/regions", json={"code": f"x{parent}", "name": "X", "parent": parent},
                       headers=op, timeout=10)
        assert r.status_code == 403, (parent, r.text)
    r = httpx.post(f"{world.base}/api/regions", json={"code": "v-op", "name": "Village", "parent": "t1"},
                   headers=op, timeout=10)
    assert r.status_code == 201


# -- finding 8: health is scoped, metrics opt-in ------------------------------------------


def test_f08_health_shows_only_the_callers_township(world: SecurityWorld) -> None:
    h = httpx.get(f"{world.base}/api/health", headers=world.headers("operator"), timeout=10).json()
    ids = {c["camera_id"] for c in h["camera_health"]}
    assert ids == {"cam1"} and h["cameras"] == 1
    assert "t2" not in {r["code"] for r in h["regions"]}
    admin = httpx.get(f"{world.base}/api/health", headers=world.headers("admin"), timeout=10).json()
    assert {c["camera_id"] for c in admin["camera_health"]} == {"cam1", "cam2"}


def test_f08_metrics_need_an_allowed_address_or_a_credential(world: SecurityWorld) -> None:
    assert httpx.get(f"{world.base}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{world.base}/metrics", headers=world.headers("viewer"), timeout=10).status_code == 403
    scoped = httpx.get(f"{world.base}/metrics", headers=world.headers("operator"), timeout=10)
    assert scoped.status_code == 200 and 'camera="cam1"' in scoped.text and 'camera="cam2"' not in scoped.text
    # Prometheus at an allowed address (127.0.0.2 here) scrapes without a key.
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=10) as prom:
        r = prom.get(f"{world.base}/metrics")
    assert r.status_code == 200 and 'camera="cam2"' in r.text


# -- finding 13: tokens --------------------------------------------------------------------


def _sign_in(world: SecurityWorld, name: str) -> dict:  # type: ignore[type-arg]
    r = httpx.post(f"{world.base}/api/auth/token", json={"username": name, "password": PASSWORD}, timeout=30)
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def test_f13_refresh_tokens_rotate_and_a_reused_one_ends_the_sign_in(world: SecurityWorld) -> None:
    pair = _sign_in(world, "viewer")
    assert pair["expires_in"] <= 15 * 60
    r1 = httpx.post(f"{world.base}/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}, timeout=10)
    assert r1.status_code == 200 and r1.json()["refresh_token"] != pair["refresh_token"]
    # The old one again: a stolen copy. Refused, and the whole sign-in ends.
    again = httpx.post(f"{world.base}/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}, timeout=10)
    assert again.status_code == 401 and "already used" in again.json()["detail"]
    new_access = {"Authorization": f"Bearer {r1.json()['access_token']}"}
    assert httpx.get(f"{world.base}/api/me", headers=new_access, timeout=10).status_code == 401
    rotated = httpx.post(f"{world.base}/api/auth/refresh", json={"refresh_token": r1.json()["refresh_token"]},
                         timeout=10)
    assert rotated.status_code == 401


def test_f13_sign_out_revokes_access_refresh_and_stream_tokens(world: SecurityWorld) -> None:
    pair = _sign_in(world, "viewer")
    auth = {"Authorization": f"Bearer {pair['access_token']}"}
    stream = world.stream_token("viewer", headers=auth)
    assert httpx.post(f"{world.base}/api/auth/signout", headers=auth, timeout=10).status_code == 200
    assert httpx.get(f"{world.base}/api/me", headers=auth, timeout=10).status_code == 401
    assert httpx.post(f"{world.base}/api/auth/refresh", json={"refresh_token": pair["refresh_token"]},
                      timeout=10).status_code == 401
    r = httpx.get(f"{world.base}/api/cameras/cam1/live.m3u8?token={stream}", timeout=10)
    assert r.status_code == 401


def test_f13_api_keys_expire_and_die_with_their_creator(world: SecurityWorld) -> None:
    creator = world.new_user("admin", ["*"])
    h = world.headers(creator)
    r = httpx.post(f"{world.base}/api/keys", json={"name": "nvr", "role": "viewer", "expires_days": 1}, headers=h,
                   timeout=10)
    assert r.status_code == 201
    key = r.json()["key"]
    assert abs(r.json()["expires_us"] - (time.time() + 86400) * 1e6) < 120e6
    bearer = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{world.base}/api/cameras", headers=bearer, timeout=10).status_code == 200
    assert httpx.post(f"{world.base}/api/users/{creator}/disable", headers=world.headers("admin"),
                      timeout=10).status_code == 200
    assert httpx.get(f"{world.base}/api/cameras", headers=bearer, timeout=10).status_code == 401
    too_long = httpx.post(f"{world.base}/api/keys", json={"name": "k", "role": "viewer", "expires_days": 10_000},
                          headers=world.headers("admin"), timeout=10)
    assert too_long.status_code == 422


# -- finding 14: holds -----------------------------------------------------------------------


def test_f14_only_the_creator_or_an_admin_releases_a_hold(world: SecurityWorld) -> None:
    other = world.new_user("investigator")
    body = {"start": 1_800_000_000_000, "end": 1_800_000_060_000, "reason": "case 14"}
    placed = httpx.post(f"{world.base}/api/cameras/cam1/holds", json=body, headers=world.headers("investigator"),
                        timeout=10)
    assert placed.status_code == 201, placed.text
    hold = placed.json()["id"]
    first = world.last_audit_id()
    r = httpx.delete(f"{world.base}/api/cameras/cam1/holds/{hold}", headers=world.headers(other), timeout=10)
    assert r.status_code == 403
    r = httpx.delete(f"{world.base}/api/cameras/cam1/holds/{hold}", headers=world.headers("admin"), timeout=10)
    assert r.status_code == 200 and r.json()["released_by"] == "admin"
    rows = world.rows_since(first, action="hold_release")
    assert [(x.user, x.outcome) for x in rows] == [(other, "denied"), ("admin", "ok")]
    assert "placed_by=investigator" in rows[1].detail and "released_by=admin" in rows[1].detail
