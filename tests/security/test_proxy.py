"""Finding 12: the client address cannot be forged, and nobody can lock an account but slow guessing."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml
from argon2 import PasswordHasher
from pydantic import ValidationError

from config.settings import Settings
from storage.db.engine import open_engine
from storage.index.credentials import load_cipher
from storage.index.registry import Registry
from storage.index.segments import SegmentIndex
from streams.access.audit import AuditLog
from streams.access.guard import AuthState
from streams.access.tokens import TokenSigner
from streams.access.users import UserStore
from streams.app import create_app
from streams.context import AppContext
from tests.support.cameras import free_port
from tests.support.http import UvicornThread

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PASSWORD = "owner password 1"


def test_f12_deploy_trusts_only_nginx_and_nginx_overwrites_the_header() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    trusted = compose["x-sharpeyes-env"]["SHARPEYES_FORWARDED_ALLOW_IPS"]
    nginx_ip = compose["services"]["nginx"]["networks"]["default"]["ipv4_address"]
    assert trusted == nginx_ip and "*" not in trusted
    conf = (DEPLOY / "nginx.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    assert "$proxy_add_x_forwarded_for" not in conf
    with pytest.raises(ValidationError, match="reverse proxy"):
        Settings(forwarded_allow_ips="*")


def _server(tmp: Path, forwarded: str) -> tuple[UvicornThread, AuditLog, str]:
    settings = Settings(data_dir=tmp, forwarded_allow_ips=forwarded)
    engine = open_engine(settings.database_url)
    cipher = load_cipher(tmp)
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("owner", PASSWORD, "admin", ["*"])
    audit = AuditLog(engine)
    state = AuthState(users=users, audit=audit, tokens=TokenSigner(cipher.derive("sharpeyes token signing v1")))
    ctx = AppContext(settings=settings, index=SegmentIndex(engine), registry=Registry(engine, cipher),
                     store=None, auth=state)  # type: ignore[arg-type]
    port = free_port()
    server = UvicornThread(create_app(ctx), port, settings).start()
    return server, audit, f"http://127.0.0.1:{port}"


@pytest.fixture
def behind_nginx(tmp_path: Path) -> Iterator[tuple[AuditLog, str]]:
    """The server as deployed: 127.0.0.1 plays nginx, the one trusted proxy."""
    server, audit, base = _server(tmp_path, "127.0.0.1")
    yield audit, base
    server.stop()


def _sign_in(base: str, password: str, xff: str) -> httpx.Response:
    return httpx.post(f"{base}/api/auth/token", json={"username": "owner", "password": password},
                      headers={"X-Forwarded-For": xff}, timeout=30)


def test_f12_a_client_that_is_not_the_proxy_cannot_forge_its_address(tmp_path: Path) -> None:
    server, audit, base = _server(tmp_path, "10.9.9.9")  # nginx is elsewhere: 127.0.0.1 is a client
    try:
        assert _sign_in(base, "wrong", "6.6.6.6").status_code == 401
        assert [r.client_ip for r in audit.query(action="sign_in_failed")] == ["127.0.0.1"]
    finally:
        server.stop()


def test_f12_rotating_addresses_slow_guessing_but_never_lock_the_owner_out(behind_nginx) -> None:  # type: ignore[no-untyped-def]
    audit, base = behind_nginx
    assert _sign_in(base, PASSWORD, "10.1.1.1").status_code == 200  # the owner's usual address
    answers = [_sign_in(base, "guess", f"203.0.113.{n}") for n in range(12)]
    codes = [a.status_code for a in answers]
    assert codes[:5] == [401] * 5 and 429 in codes[5:]
    waits = [int(a.headers["Retry-After"]) for a in answers if a.status_code == 429]
    assert max(waits) <= 60  # slowed, never locked
    # The owner, from the address they signed in from before, is not held back at all.
    assert _sign_in(base, PASSWORD, "10.1.1.1").status_code == 200
    recorded = {r.client_ip for r in audit.query(action="sign_in_failed", limit=100)}
    assert "203.0.113.0" in recorded and "127.0.0.1" not in recorded  # nginx's header, trusted
