"""The demo's simulated GB/T 28181 device registers to our server with digest and its channel
becomes a camera in the demo township (``sharpeyes demo`` shows both ingest paths)."""

from __future__ import annotations

import time

from config.cameras import Region
from ingest.gb28181.sip import Peer
from streams.demo.gb_device import DEMO_CHANNEL_ID, DEMO_DEVICE_ID, SimulatedGbDevice
from tests.gb28181.conftest import Gb


def test_simulated_device_registers_and_its_channel_appears(gb: Gb) -> None:
    gb.registry.add_region(Region(code="demo-east", name="东镇"))
    gb.devices.add(DEMO_DEVICE_ID, "Demo-pass-1")
    device = SimulatedGbDevice(None, Peer("UDP", "127.0.0.1", gb.port), gb.service.settings.gb_id,  # type: ignore[arg-type]
                               gb.service.settings.gb_domain, "Demo-pass-1", civil_code="demo-east")

    async def start() -> None:
        await device.start()
    gb.call(start())
    try:
        deadline = time.monotonic() + 20
        while gb.registry.camera(DEMO_CHANNEL_ID) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        cam = gb.registry.camera(DEMO_CHANNEL_ID)
        assert cam is not None and cam.source == "gb28181" and cam.gb_device_id == DEMO_DEVICE_ID
        assert cam.region == "demo-east" and "模拟" in cam.name
        dev = gb.devices.get(DEMO_DEVICE_ID)
        assert dev is not None and dev.state == "online" and device.registered
    finally:
        gb.call(device.close())
