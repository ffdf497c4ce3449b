"""Bad input from devices: each ends in a clear reason in the status, no crash, and the
other devices unaffected (a second, well-behaved SIPp device registers through all of it)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from ingest.gb28181.registrar import RegisterRateLimit
from tests.gb28181.conftest import CHANNELS, DEVICE, Gb, start_gb
from tests.gb28181.sipp_device import SERVER_ID, DOMAIN, catalog_scenario, register_scenario
from tests.support.sipp import needs_sipp, run_sipp

pytestmark = needs_sipp
OTHER = "34020000001320000077"


def _device(gb: Gb, dev: str, password: str, ooc: bytes | None, keepalives: int = 2):
    return run_sipp(["-au", dev, "-ap", password, "-m", "1", "-timeout", "40", "-timeout_error",
                     f"127.0.0.1:{gb.port}"], scenario=register_scenario(dev, keepalives=keepalives), ooc=ooc)


def _wait(pred: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    return pred()


def test_catalog_with_sumnum_larger_than_what_arrives_keeps_what_arrived(gb: Gb) -> None:
    gb.devices.add(DEVICE, "pw-1")
    sipp = _device(gb, DEVICE, "pw-1", catalog_scenario(DEVICE, CHANNELS, sum_num=5), keepalives=4)
    assert sipp.wait(60) == 0, sipp.log
    dev = _wait(lambda: (d := gb.devices.get(DEVICE)) is not None and d.catalog.get("sn") is not None and d)
    assert dev.catalog["complete"] is False and dev.catalog["received"] == 3 and dev.catalog["sum_num"] == 5
    assert "SumNum 5 but 3 item(s) arrived" in dev.catalog["summary"]
    assert len(gb.registry.cameras()) == 3 and dev.channels == 3


def test_body_in_an_undeclared_encoding_is_read_and_noted(gb: Gb) -> None:
    gb.devices.add(DEVICE, "pw-1")
    sipp = _device(gb, DEVICE, "pw-1", catalog_scenario(DEVICE, CHANNELS[:2], declare=False))
    assert sipp.wait(60) == 0, sipp.log
    names = _wait(lambda: sorted(c.name for c in gb.registry.cameras()))
    assert names == sorted(["东门一号", "西街路口"])
    dev = gb.devices.get(DEVICE)
    assert dev is not None and "declares no encoding; read as GB18030" in dev.status["encoding_note"]


def test_catalog_item_with_an_invalid_id_is_skipped_with_its_reason(gb: Gb) -> None:
    gb.devices.add(DEVICE, "pw-1")
    channels = [CHANNELS[0], ("3401020300131000000", "十九位", "34010203"),
                ("34010203001310000X02", "字母", "34010203"), CHANNELS[1]]
    sipp = _device(gb, DEVICE, "pw-1", catalog_scenario(DEVICE, channels))
    assert sipp.wait(60) == 0, sipp.log
    dev = _wait(lambda: (d := gb.devices.get(DEVICE)) is not None and d.catalog.get("sn") is not None and d)
    assert dev.catalog["complete"] is True  # 2 valid + 2 skipped = SumNum 4: not waiting for more
    assert len(dev.catalog["skipped"]) == 2 and all("not a 20-digit" in s for s in dev.catalog["skipped"])
    assert {c.id for c in gb.registry.cameras()} == {CHANNELS[0][0], CHANNELS[1][0]}


def _register_bytes(dev: str, n: int, port: int) -> bytes:
    return (f"REGISTER sip:{SERVER_ID}@{DOMAIN} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bKflood{n}\r\n"
            f"From: <sip:{dev}@{DOMAIN}>;tag=f{n}\r\nTo: <sip:{dev}@{DOMAIN}>\r\nCall-ID: flood-{n}\r\n"
            f"CSeq: {n + 1} REGISTER\r\nContact: <sip:{dev}@127.0.0.1:{port}>\r\nExpires: 3600\r\n"
            "Content-Length: 0\r\n\r\n").encode()


@pytest.fixture
def gb_tight(gb_settings: Any, index_engine: Any) -> Any:
    from config.cameras import Region
    from storage.index.registry import Registry

    Registry(index_engine).add_region(Region(code="340102", name="蜀山区"))
    server = start_gb(gb_settings, index_engine, rate_limit=RegisterRateLimit(burst=10, rate=1.0))
    yield server
    server.server.close()


def test_register_flood_from_one_address_is_rate_limited_and_others_register(gb_tight: Gb) -> None:
    gb = gb_tight
    gb.devices.add(OTHER, "flood-pw")
    gb.devices.add(DEVICE, "pw-1")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    port = sock.getsockname()[1]
    for n in range(300):
        sock.sendto(_register_bytes(OTHER, n, port), ("127.0.0.1", gb.port))
    # ...and garbage and a truncated message from the same address.
    sock.sendto(b"\x16\x03\x01 not sip at all\r\n\r\n", ("127.0.0.1", gb.port))
    sock.sendto(_register_bytes(OTHER, 999, port)[:-20], ("127.0.0.1", gb.port))
    statuses = []
    try:
        while len(statuses) < 300:
            statuses.append(int(sock.recv(65535).split(b" ", 2)[1]))
    except socket.timeout:
        pass
    sock.close()
    assert statuses.count(401) <= 12 and statuses.count(503) >= 250, statuses[:20]
    sipp = _device(gb, DEVICE, "pw-1", catalog_scenario(DEVICE, CHANNELS[:1]))
    assert sipp.wait(60) == 0, sipp.log
    assert _wait(lambda: (d := gb.devices.get(DEVICE)) is not None and d.state == "online" or
                 (d is not None and d.channels == 1))
    flooder = _wait(lambda: (d := gb.devices.get(OTHER)) is not None and "rate-limited" in d.reason and d)
    assert flooder and flooder.state == "refused" and f"127.0.0.1:{port}" in flooder.reason
    assert "not a SIP start line" in gb.service.rejected["127.0.0.1"] or "truncated" in gb.service.rejected["127.0.0.1"]
    assert gb.service.endpoint.counters["handler_errors"] == 0
