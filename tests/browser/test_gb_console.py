"""The console's GB/T 28181 page in Chromium, on devices a SIPp device and our server made real."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from argon2 import PasswordHasher

from config.cameras import Region
from config.settings import Settings
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex
from streams.access.users import UserStore
from streams.app import create_app
from streams.context import AppContext
from tests.browser.conftest import ARTIFACTS, CHROMIUM, HERE, PASSWORD, ROOT, _skip_reason
from tests.gb28181.conftest import CHANNELS, DEVICE, Gb, start_gb
from tests.gb28181.sipp_device import catalog_scenario, register_scenario
from tests.support.cameras import free_port
from tests.support.http import UvicornThread
from tests.support.sipp import SIPP, run_sipp

REFUSED = "34020000001320000099"


@pytest.fixture
def gb_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Gb, str]]:
    reason = _skip_reason() or (None if SIPP else "sipp is not installed")
    if reason:
        pytest.skip(reason)
    monkeypatch.delenv("SHARPEYES_SECRET_KEY", raising=False)
    settings = Settings(data_dir=tmp_path, gb_sip_bind="127.0.0.1:0", gb_media_host="127.0.0.1", worker_id="w1")
    engine = open_engine(settings.database_url)
    gb = start_gb(settings, engine)
    gb.registry.add_region(Region(code="340102", name="蜀山区"))
    gb.registry.add_region(Region(code="34010203", name="南七村", parent="340102"))
    UserStore(engine, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)).add(
        "operator", PASSWORD, "operator", ["*"])
    ctx = AppContext(settings=settings, index=SegmentIndex(engine), registry=gb.registry, store=None,  # type: ignore[arg-type]
                     gb=gb.server)
    port = free_port()
    http = UvicornThread(create_app(ctx), port, settings).start()
    try:
        yield gb, f"http://127.0.0.1:{port}"
    finally:
        http.stop()
        gb.server.close()
        engine.dispose()


def test_operator_sees_devices_states_reasons_and_doctor(gb_world: tuple[Gb, str]) -> None:
    gb, base = gb_world
    gb.devices.add(DEVICE, "Dev-pass-1")
    gb.devices.add(REFUSED, "Right-pass-1")
    args = ["-m", "1", "-timeout", "30", "-timeout_error", f"127.0.0.1:{gb.port}"]
    good = run_sipp(["-au", DEVICE, "-ap", "Dev-pass-1", *args], scenario=register_scenario(DEVICE, keepalives=3),
                    ooc=catalog_scenario(DEVICE, CHANNELS))
    bad = run_sipp(["-au", REFUSED, "-ap", "wrong", *args], scenario=register_scenario(REFUSED, expect=403))
    assert good.wait(40) == 0, good.log
    assert bad.wait(40) == 0, bad.log
    env = {**os.environ, "SHARPEYES_BASE": base, "SHARPEYES_PASSWORD": PASSWORD, "SHARPEYES_ARTIFACTS": str(ARTIFACTS),
           "CHROMIUM": CHROMIUM, "GB_DEVICE": DEVICE}
    proc = subprocess.run(["node", str(HERE / "gb_devices.mjs")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    r = json.loads(lines[-1]) if lines else {"ok": False, "error": proc.stderr[-3000:]}
    assert r.get("ok"), r.get("error")
    rows = {row["id"]: row for row in r["rows"]}
    assert rows[DEVICE]["state"] == "offline" and rows[DEVICE]["stateText"] == "离线"
    assert "3 missed intervals" in rows[DEVICE]["reason"] and rows[DEVICE]["cells"][4] == "3"
    assert rows[REFUSED]["state"] == "refused" and "wrong password" in rows[REFUSED]["reason"]
    doctor = " | ".join(r["doctor"])
    assert "media address 127.0.0.1" in doctor and "no INVITE yet" in doctor and "3 of 3 items" in doctor
    assert "127.0.0.1" in r["server"]
    notes = dict(r["notes"])
    assert notes[CHANNELS[2][0]] and "34010299" in notes[CHANNELS[2][0]] and notes[CHANNELS[0][0]] is None
    assert (ARTIFACTS / "gb-devices.png").stat().st_size > 10_000
