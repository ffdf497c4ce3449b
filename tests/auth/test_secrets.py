"""Camera credentials: encrypted at rest, ``***`` in answers, absent from logs and the audit table."""

from __future__ import annotations

import logging
import os

import pytest
from cryptography.fernet import Fernet
from fastapi import APIRouter
from starlette.requests import HTTPConnection
from sqlalchemy import text

from config.cameras import Camera
from config.redact import redact_url
from storage.index.registry import Registry
from storage.index.credentials import (
    ENCRYPTED_PREFIX,
    SecretCipher,
    SecretKeyError,
    load_cipher,
    public_camera_dict,
)
from streams.access.guard import Principal, allow, audit
from tests.auth.conftest import CAMERA_PASSWORD, World


def test_key_file_made_once_with_mode_0600(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = load_cipher(tmp_path, environ={})
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    again = load_cipher(tmp_path, environ={})
    assert again.decrypt(first.encrypt("x")) == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no temporary file left


def test_loose_key_file_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    load_cipher(tmp_path, environ={})
    os.chmod(tmp_path / "secret.key", 0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        load_cipher(tmp_path, environ={})


def test_env_key_wins_and_bad_key_explains(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = Fernet.generate_key().decode()
    cipher = load_cipher(tmp_path, environ={"SHARPEYES_SECRET_KEY": key})
    assert not (tmp_path / "secret.key").exists()
    assert SecretCipher(key).decrypt(cipher.encrypt("y")) == "y"
    with pytest.raises(SecretKeyError, match="Fernet.generate_key"):
        load_cipher(tmp_path, environ={"SHARPEYES_SECRET_KEY": "not a key"})


def test_camera_urls_encrypted_at_rest(world: World) -> None:
    with world.engine.connect() as c:  # type: ignore[attr-defined]
        rows = dict(c.execute(text("SELECT id, main_url FROM cameras")).all())
    assert rows["cam-in"].startswith(ENCRYPTED_PREFIX) and CAMERA_PASSWORD not in rows["cam-in"]
    assert rows["cam-out"] == "rtsp://10.0.0.6/main"  # nothing secret: kept readable
    assert CAMERA_PASSWORD in world.registry.camera("cam-in").main_url  # type: ignore[union-attr]

    world.registry.update_camera("cam-in", sub_url=f"rtsp://admin:{CAMERA_PASSWORD}@10.0.0.5:554/sub")
    with world.engine.connect() as c:  # type: ignore[attr-defined]
        main, sub = c.execute(text("SELECT main_url, sub_url FROM cameras WHERE id='cam-in'")).one()
    assert CAMERA_PASSWORD not in main + sub
    assert world.registry.cameras(region="t1")[0].sub_url.endswith("/sub")  # type: ignore[union-attr]


def test_wrong_key_says_what_to_do(world: World) -> None:
    other = Registry(world.engine, SecretCipher(Fernet.generate_key()))
    with pytest.raises(SecretKeyError, match="SHARPEYES_SECRET_KEY"):
        other.camera("cam-in")


def test_public_camera_dict_hides_the_password(world: World) -> None:
    shown = public_camera_dict(world.registry.camera("cam-in"))  # type: ignore[arg-type]
    assert shown["main_url"] == "rtsp://***@10.0.0.5:554/main"
    assert CAMERA_PASSWORD not in str(shown)


def test_password_absent_from_responses_logs_and_audit(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # SQL with parameters
    router = APIRouter()

    @router.get("/api/test-cameras/{id}")
    def show(id: str, request_principal: Principal = allow("viewer")) -> dict[str, object]:
        return public_camera_dict(request_principal.camera)  # type: ignore[arg-type]

    @router.post("/api/test-cameras/{id}/touch")
    def touch(id: str, conn: HTTPConnection, principal: Principal = allow("operator")) -> dict[str, str]:
        camera = principal.camera
        # A careless route puts the URL into the audit detail: it is redacted on the way in.
        audit(conn, "camera_edit", detail=f"probed {camera.main_url}")  # type: ignore[union-attr]
        logging.getLogger("sharpeyes.test").info("probed %s", redact_url(camera.main_url))  # type: ignore[union-attr]
        return {"status": "ok"}

    world.app.include_router(router)  # type: ignore[attr-defined]
    try:
        responses = []
        world.registry.add_camera(
            Camera(id="cam-new", name="new", region="t1", main_url=f"rtsp://u:{CAMERA_PASSWORD}@10.0.0.7/x")
        )
        for path in ("/api/test-cameras/cam-in", "/api/test-cameras/cam-new", "/api/test-cameras/cam-out"):
            responses.append(world.client.get(path, headers=world.headers("viewer")))
        responses.append(world.client.post("/api/test-cameras/cam-in/touch", headers=world.headers("operator")))
        responses.append(world.client.get("/api/audit", headers=world.headers("admin")))
        responses.append(world.client.get("/openapi.json"))
        assert [r.status_code for r in responses] == [200, 200, 404, 200, 200, 200]
        assert responses[0].json()["main_url"] == "rtsp://***@10.0.0.5:554/main"
        for r in responses:
            assert CAMERA_PASSWORD not in r.text
        with world.engine.connect() as c:  # type: ignore[attr-defined]
            assert CAMERA_PASSWORD not in str(c.execute(text("SELECT * FROM audit")).all())
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # The capture saw the SQL (with parameters) that stored the camera, and no line holds the password.
    assert any(rec.name.startswith("sqlalchemy.engine") and "INSERT INTO cameras" in rec.getMessage() for rec in caplog.records)
    assert [rec.getMessage() for rec in caplog.records if CAMERA_PASSWORD in rec.getMessage()] == []
    assert CAMERA_PASSWORD not in caplog.text
