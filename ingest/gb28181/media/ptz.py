"""PTZ for GB/T 28181 channels: the 8-byte ``PTZCmd`` of GB/T 28181-2016 Annex A.3, in a
``DeviceControl`` MESSAGE.

Bytes: ``A5``, ``0F`` (version 0, check nibble), address low byte, the instruction (bit 5 zoom
out, bit 4 zoom in, bit 3 up, bit 2 down, bit 1 left, bit 0 right; 0 = stop), pan speed, tilt
speed, zoom speed (high nibble) with the address's high nibble, and the sum of the seven bytes
before it modulo 256. Sent as 16 upper-case hex digits.
"""

from __future__ import annotations

from lxml import etree

PTZ_ACTIONS: dict[str, int] = {
    "stop": 0x00, "right": 0x01, "left": 0x02, "down": 0x04, "up": 0x08, "zoom_in": 0x10, "zoom_out": 0x20,
    "up_left": 0x0A, "up_right": 0x09, "down_left": 0x06, "down_right": 0x05,
}


def ptz_command(action: str, speed: int = 128, address: int = 1) -> str:
    """The PTZCmd hex string for ``action`` at ``speed`` (0..255; zoom uses its top 4 bits)."""
    if action not in PTZ_ACTIONS:
        raise ValueError(f"PTZ action {action!r}: one of {', '.join(PTZ_ACTIONS)}")
    if not 0 <= speed <= 255:
        raise ValueError(f"PTZ speed {speed}: 0..255")
    code = PTZ_ACTIONS[action]
    pan = speed if code & 0x03 else 0
    tilt = speed if code & 0x0C else 0
    zoom = (speed >> 4) if code & 0x30 else 0
    head = [0xA5, 0x0F, address & 0xFF, code, pan, tilt, ((zoom & 0x0F) << 4) | ((address >> 8) & 0x0F)]
    return bytes(head + [sum(head) % 256]).hex().upper()


def device_control_body(sn: int, channel_id: str, ptz_cmd: str) -> bytes:
    root = etree.Element("Control")
    for tag, value in (("CmdType", "DeviceControl"), ("SN", str(sn)), ("DeviceID", channel_id), ("PTZCmd", ptz_cmd)):
        etree.SubElement(root, tag).text = value
    info = etree.SubElement(root, "Info")
    etree.SubElement(info, "ControlPriority").text = "5"
    text = etree.tostring(root, pretty_print=True, encoding="unicode")
    return f'<?xml version="1.0" encoding="GB2312"?>\r\n{text}'.encode("ascii")
