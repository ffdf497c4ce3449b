"""Operating GB/T 28181: ``sharpeyes gb ...`` and ``GET /api/gb/devices`` on a device SIPp registered."""

from __future__ import annotations

import json
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sharpeyes.cli.main import app as cli_app
from storage.index.segments import SegmentIndex
from streams.access.audit import AuditLog
from streams.access.guard import AuthState
from streams.access.ratelimit import SignInLimiter
from streams.access.tokens import TokenSigner
from streams.access.users import UserStore
from streams.app import create_app
from streams.context import AppContext
from storage.index.credentials import load_cipher
from tests.gb28181.conftest import CHANNELS, DEVICE, Gb
from tests.gb28181.sipp_device import catalog_scenario, register_scenario
from tests.support.sipp import needs_sipp, run_sipp

pytestmark = needs_sipp


@pytest.fixture
def cli(gb: Gb, gb_settings: Any, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SHARPEYES_DATA_DIR", str(gb_settings.data_dir))
    monkeypatch.setenv("SHARPEYES_DATABASE_URL", gb_settings.database_url)
    monkeypatch.setenv("COLUMNS", "250")  # tables unwrapped
    monkeypatch.setenv("SHARPEYES_GB_SIP_BIND", "127.0.0.1:5060")  # as the server process would have it
    runner = CliRunner()
    import logging
    handlers = logging.root.handlers[:]

    def run(*args: str, ok: bool = True):  # type: ignore[no-untyped-def]
        result = runner.invoke(cli_app, list(args))
        # The CLI points the root logger at CliRunner's stream, closed after the call; the
        # in-process server's later log lines would fail on it.
        logging.root.handlers[:] = handlers
        assert (result.exit_code == 0) == ok, result.output
        return result
    return run


def _client(gb: Gb, gb_settings: Any, *, with_server: bool) -> tuple[TestClient, dict[str, dict[str, str]]]:
    engine = gb.devices._sessions.kw["bind"]  # the index engine the server writes to
    cipher = load_cipher(gb_settings.data_dir)
    users = UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    state = AuthState(users=users, audit=AuditLog(engine),
                      tokens=TokenSigner(cipher.derive("sharpeyes token signing v1")), limiter=SignInLimiter())
    if not users.list():
        users.add("op", "Password-123456", "operator", ["*"])
        users.add("village", "Password-123456", "operator", ["34010203"])
        users.add("elsewhere", "Password-123456", "operator", ["999"])
        users.add("watcher", "Password-123456", "viewer", ["*"])
    ctx = AppContext(settings=gb_settings, index=SegmentIndex(engine), registry=gb.registry, store=None,  # type: ignore[arg-type]
                     auth=state, gb=gb.server if with_server else None)
    headers = {n: {"Authorization": f"Bearer {state.tokens.issue('access', n)[0]}"}
               for n in ("op", "village", "elsewhere", "watcher")}
    return TestClient(create_app(ctx)), headers


def test_gb_cli_and_api(gb: Gb, gb_settings: Any, cli: Any) -> None:
    from config.cameras import Region
    gb.registry.add_region(Region(code="999", name="别处"))
    cli("gb", "device", "add", DEVICE, "--password", "Cli-pass-9")
    cli("gb", "device", "add", "123", ok=False)
    sipp = run_sipp(["-au", DEVICE, "-ap", "Cli-pass-9", "-m", "1", "-timeout", "30", "-timeout_error",
                     f"127.0.0.1:{gb.port}"], scenario=register_scenario(DEVICE, keepalives=3),
                    ooc=catalog_scenario(DEVICE, CHANNELS))
    assert sipp.wait(40) == 0, sipp.log

    # .stdout: the server's own log lines (it runs in this process) go to stderr.
    listed = json.loads(cli("gb", "devices", "--json").stdout)
    assert [d["device_id"] for d in listed] == [DEVICE] and listed[0]["channels"] == 3
    assert listed[0]["state"] == "online" and "Cli-pass-9" not in json.dumps(listed) and listed[0]["has_password"]
    assert DEVICE in cli("gb", "devices").output
    doctor = json.loads(cli("gb", "doctor", DEVICE, "--json").stdout)[0]
    texts = " | ".join(f["text"] for f in doctor["findings"])
    assert "media address 127.0.0.1" in texts and "RTP ports 30000-30999" in texts
    assert "no NAT between us" in texts and "no INVITE yet" in texts
    gb.devices.record_invite(DEVICE, channel=CHANNELS[0][0], outcome="invite_refused", reason="488 Not Acceptable")
    assert "invite_refused: 488" in cli("gb", "doctor").output
    cams = {c["id"]: c for c in json.loads(cli("camera", "list", "--json").stdout)}
    assert cams[CHANNELS[2][0]]["region_note"] and cams[CHANNELS[0][0]]["region_note"] is None
    assert "CivilCode 34010299 not registered" in cli("camera", "list").output

    client, headers = _client(gb, gb_settings, with_server=True)
    with client:
        r = client.get("/api/gb/devices", headers=headers["op"])
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["enabled"] and body["server"]["here"] and body["server"]["rtp_ports"] == "30000-30999"
        (dev,) = body["devices"]
        assert dev["device_id"] == DEVICE and dev["channels"] == 3 and dev["last_invite"]["outcome"] == "invite_refused"
        assert any("NAT" in f["text"] for f in dev["doctor"])
        assert [d["device_id"] for d in client.get("/api/gb/devices", headers=headers["village"]).json()["devices"]] \
            == [DEVICE]
        assert client.get("/api/gb/devices", headers=headers["elsewhere"]).json()["devices"] == []
        assert client.get("/api/gb/devices", headers=headers["watcher"]).status_code == 403
        assert client.get("/api/gb/devices").status_code == 401
        r = client.post(f"/api/gb/devices/{CHANNELS[0][0][:19]}9/refresh", headers=headers["op"])
        assert r.status_code == 404
    client, headers = _client(gb, gb_settings, with_server=False)
    with client:
        r = client.post(f"/api/gb/devices/{DEVICE}/refresh", headers=headers["op"])
        assert r.status_code == 421 and "GB_SIP_BIND" in r.json()["detail"]

    cli("gb", "device", "remove", DEVICE)
    cli("gb", "device", "remove", DEVICE, ok=False)
    actions = [e.action for e in gb.audit.query()]
    assert "gb_device_add" in actions and "gb_device_remove" in actions
