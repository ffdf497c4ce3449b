"""A device's own media transport (``gb device add --media-transport``) wins over GB_MEDIA_TRANSPORT."""

from __future__ import annotations

import pytest

from ingest.gb28181.media.receiver import PortPool
from ingest.gb28181.media.session import GbLink
from tests.gb28181.conftest import DEVICE, Gb

OTHER = "34020000001320000002"


def test_per_device_media_transport(gb: Gb) -> None:
    gb.devices.add(DEVICE, "pw", media_transport="tcp-active")
    gb.devices.add(OTHER, "pw")
    with pytest.raises(ValueError, match="tcp-passive"):
        gb.devices.add(OTHER, None, media_transport="sctp")
    link = GbLink(loop=gb.server.loop, endpoint=gb.service.endpoint, devices=gb.service, our_id="3" * 20,
                  domain="3402000000", media_host="127.0.0.1", ports=PortPool(31500, 31509),
                  default_transport="tcp-passive")
    assert link.transport_for(DEVICE) == "tcp-active"
    assert link.transport_for(OTHER) == "tcp-passive"  # the default
    gb.devices.add(DEVICE, None, media_transport="")  # back to the default
    assert link.transport_for(DEVICE) == "tcp-passive"
    dev = gb.devices.get(DEVICE)
    assert dev is not None and dev.media_transport == "" and dev.has_password
