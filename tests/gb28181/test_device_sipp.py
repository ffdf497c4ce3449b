"""A SIPp device against our GB/T 28181 server: digest registration, a wrong password,
keepalives, a 3-channel Catalog in 3 GB2312 MESSAGEs, offline after 3 missed keepalives."""

from __future__ import annotations

import time

from tests.gb28181.conftest import CHANNELS, DEVICE, Gb
from tests.gb28181.sipp_device import catalog_scenario, register_scenario
from tests.support.sipp import needs_sipp, run_sipp

pytestmark = needs_sipp


def _sipp(gb: Gb, dev: str, password: str, scenario: str, ooc: bytes | None = None, timeout: float = 40):
    return run_sipp(["-au", dev, "-ap", password, "-m", "1", "-timeout", str(int(timeout)), "-timeout_error",
                     f"127.0.0.1:{gb.port}"], scenario=scenario, ooc=ooc)


def test_device_registers_keeps_alive_answers_catalog_then_goes_offline(gb: Gb) -> None:
    gb.devices.add(DEVICE, "Dev-pass-1")
    sipp = _sipp(gb, DEVICE, "Dev-pass-1",
                 register_scenario(DEVICE, keepalives=5, interval_ms=1000, silence_ms=6000),
                 ooc=catalog_scenario(DEVICE, CHANNELS))
    assert sipp.wait(60) == 0, sipp.log

    cams = {c.id: c for c in gb.registry.cameras()}
    assert set(cams) == {cid for cid, _, _ in CHANNELS}, sipp.log
    first, second, third = (cams[cid] for cid, _, _ in CHANNELS)
    assert (first.name, second.name, third.name) == ("东门一号", "西街路口", "村委会大院")
    assert first.region == second.region == "34010203" and first.region_note is None
    assert third.region == "340102" and third.gb_civil_code == "34010299"
    assert third.region_note and "34010299" in third.region_note and "340102" in third.region_note
    assert all(c.source == "gb28181" and c.gb_device_id == DEVICE and c.enabled for c in cams.values())
    assert all(c.stream_url("main") is None and c.has_stream("main") for c in cams.values())

    dev = gb.devices.get(DEVICE)
    assert dev is not None
    assert dev.channels == 3 and dev.catalog["complete"] and dev.catalog["messages"] == 3
    assert dev.transport == "UDP" and dev.source_host == "127.0.0.1" and dev.last_keepalive_us > 0
    assert 0.9 <= dev.keepalive_interval_s <= 3.0
    assert dev.state == "offline", dev
    assert "3 missed intervals" in dev.reason and "no keepalive" in dev.reason
    states = [s for d, s, _ in gb.events if d == DEVICE]
    assert states[:1] == ["online"] and states[-1] == "offline"
    ok = [e for e in gb.audit.query(action="gb_register") if e.outcome == "ok"]
    assert ok and ok[0].client_ip == "127.0.0.1"


def test_wrong_password_is_refused_with_403_and_audited(gb: Gb) -> None:
    gb.devices.add(DEVICE, "right-password")
    sipp = _sipp(gb, DEVICE, "wrong-password", register_scenario(DEVICE, expect=403))
    assert sipp.wait(30) == 0, sipp.log
    denied = [e for e in gb.audit.query(action="gb_register") if e.outcome == "denied"]
    assert denied and "wrong password" in denied[0].detail and denied[0].user == f"gb:{DEVICE}"
    deadline = time.monotonic() + 5
    while (dev := gb.devices.get(DEVICE)) is not None and dev.state != "refused" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dev is not None and dev.state == "refused" and "wrong password" in dev.reason
    assert gb.registry.cameras() == []


def test_unknown_device_is_refused_when_there_is_no_default_password(gb: Gb) -> None:
    sipp = _sipp(gb, DEVICE, "anything", register_scenario(DEVICE, expect=403))
    assert sipp.wait(30) == 0, sipp.log
    denied = [e for e in gb.audit.query(action="gb_register") if e.outcome == "denied"]
    assert denied and "unknown device" in denied[0].detail
    assert gb.devices.get(DEVICE) is None  # no row for ids nobody added


def test_unregister_with_expires_zero(gb: Gb) -> None:
    gb.devices.add(DEVICE, "pw-12345")
    sipp = _sipp(gb, DEVICE, "pw-12345", register_scenario(DEVICE, keepalives=1, unregister=True),
                 ooc=catalog_scenario(DEVICE, CHANNELS[:1]))
    assert sipp.wait(30) == 0, sipp.log
    dev = gb.devices.get(DEVICE)
    assert dev is not None and dev.state == "unregistered" and "Expires: 0" in dev.reason
    assert DEVICE not in gb.service.sessions


def test_device_over_tcp_registers_and_answers_catalog_over_its_connection(gb: Gb) -> None:
    gb.devices.add(DEVICE, "Dev-pass-1")
    sipp = run_sipp(["-t", "t1", "-au", DEVICE, "-ap", "Dev-pass-1", "-m", "1", "-timeout", "30", "-timeout_error",
                     f"127.0.0.1:{gb.port}"], scenario=register_scenario(DEVICE, keepalives=3),
                    ooc=catalog_scenario(DEVICE, CHANNELS))
    assert sipp.wait(40) == 0, sipp.log
    dev = gb.devices.get(DEVICE)
    assert dev is not None and dev.transport == "TCP" and dev.channels == 3, dev


def test_re_register_from_another_address_moves_the_device(gb: Gb) -> None:
    gb.devices.add(DEVICE, "Dev-pass-1")
    ports = []
    for _ in range(2):
        sipp = _sipp(gb, DEVICE, "Dev-pass-1", register_scenario(DEVICE, keepalives=1),
                     ooc=catalog_scenario(DEVICE, CHANNELS[:1]))
        assert sipp.wait(40) == 0, sipp.log
        dev = gb.devices.get(DEVICE)
        assert dev is not None
        ports.append(dev.source_port)
    assert ports[0] != ports[1]
    assert dev.state == "online" and f"to udp:127.0.0.1:{ports[1]}" in dev.reason
    assert "source address changed from" in dev.reason
    assert gb.service.peer(DEVICE) is not None and gb.service.peer(DEVICE).port == ports[1]  # type: ignore[union-attr]
