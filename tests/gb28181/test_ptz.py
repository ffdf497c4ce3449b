"""PTZ: the PTZCmd bytes of GB/T 28181-2016 A.3, and ``POST /api/cameras/{id}/ptz`` reaching a SIPp
device as a DeviceControl MESSAGE, audited, for a viewer in scope."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ingest.gb28181.media.ptz import ptz_command
from tests.gb28181.conftest import CHANNELS, DEVICE, Gb
from tests.gb28181.sipp_device import catalog_scenario, register_scenario
from tests.gb28181.test_api_cli import _client
from tests.support.sipp import needs_sipp, run_sipp


def test_ptz_command_bytes() -> None:
    assert ptz_command("up", 250) == "A50F010800FA00B7"  # the standard's own example
    assert ptz_command("stop") == "A50F0100000000B5"
    assert ptz_command("left", 0x40) == "A50F0102400000" + f"{(0xA5 + 0x0F + 1 + 2 + 0x40) % 256:02X}"
    assert ptz_command("zoom_in", 0xFF)[8:14] == "0000F0"
    with pytest.raises(ValueError):
        ptz_command("spin")


@needs_sipp
def test_ptz_api_sends_device_control(gb: Gb, gb_settings: Any) -> None:
    from config.cameras import Region
    gb.registry.add_region(Region(code="999", name="别处"))
    gb.devices.add(DEVICE, "Dev-pass-1")
    sipp = run_sipp(["-au", DEVICE, "-ap", "Dev-pass-1", "-m", "1", "-timeout", "30", f"127.0.0.1:{gb.port}"],
                    scenario=register_scenario(DEVICE, keepalives=8), ooc=catalog_scenario(DEVICE, CHANNELS))
    try:
        deadline = time.monotonic() + 20
        while len(gb.registry.cameras()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        channel = CHANNELS[0][0]
        client, headers = _client(gb, gb_settings, with_server=True)
        with client:
            r = client.post(f"/api/cameras/{channel}/ptz", json={"action": "left", "speed": 100},
                            headers=headers["watcher"])
            assert r.status_code == 200, r.text
            assert r.json()["ptz_cmd"] == ptz_command("left", 100)
            assert client.post(f"/api/cameras/{channel}/ptz", json={"action": "spin"},
                               headers=headers["watcher"]).status_code == 422
            assert client.post(f"/api/cameras/{channel}/ptz", json={"action": "stop"},
                               headers=headers["elsewhere"]).status_code == 404  # out of scope: as unknown
    finally:
        sipp.stop()
    trace = (sipp.workdir / "sipp_messages.log").read_text(errors="replace")
    assert f"<PTZCmd>{ptz_command('left', 100)}</PTZCmd>" in trace and "<CmdType>DeviceControl</CmdType>" in trace
    rows = [e for e in gb.audit.query(action="ptz")]
    assert len(rows) == 1 and rows[0].user == "watcher" and rows[0].camera_id == channel and rows[0].outcome == "ok"
