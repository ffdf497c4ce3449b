"""``gb doctor``: what is wrong with a device's set-up, from the index alone (any node can ask).

Per device: the media address we put in SDP and our RTP port range (and whether the device
could reach them), NAT (its Contact and the address its REGISTER came from disagree), the
keepalive picture, the last Catalog, and the last INVITE's outcome with its reason (written
by the media side through ``GbDeviceStore.record_invite``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from config.settings import Settings
from ingest.gb28181.sip.message import SipUri
from storage.index.gb_devices import GbDevice


@dataclass
class DoctorReport:
    device_id: str
    state: str
    findings: list[tuple[str, str]] = field(default_factory=list)  # (level ok|warn|fail, text)

    def add(self, level: str, text: str) -> None:
        self.findings.append((level, text))

    def as_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "state": self.state,
                "findings": [{"level": lvl, "text": t} for lvl, t in self.findings]}


def _private(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_private
    except ValueError:
        return False


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def media_address(settings: Settings) -> str:
    """The host our SDP offers for media: GB_MEDIA_HOST, else the SIP bind host."""
    return settings.gb_media_host or settings.gb_sip_bind.rpartition(":")[0]


def diagnose(settings: Settings, device: GbDevice) -> DoctorReport:
    report = DoctorReport(device.device_id, device.state)
    report.add("ok" if device.state == "online" else "fail",
               f"state {device.state}" + (f": {device.reason}" if device.reason else ""))
    media = media_address(settings)
    first, last = settings.gb_rtp_port_range
    ports = last - first + 1
    if not media or media in ("0.0.0.0", "::"):
        report.add("fail", f"media address is {media or 'empty'}: set GB_MEDIA_HOST to the address devices reach "
                           "us at, or the device sends its stream nowhere (收流超时)")
    elif _loopback(media) and device.source_host and not _loopback(device.source_host):
        report.add("fail", f"media address {media} is loopback but the device is at {device.source_host}: "
                           "set GB_MEDIA_HOST")
    elif _private(media) and device.source_host and not _private(device.source_host):
        report.add("warn", f"media address {media} is private but the device comes from public address "
                           f"{device.source_host}: it cannot reach {media} unless a VPN or port forward does")
    else:
        report.add("ok", f"media address {media}")
    report.add("ok" if ports >= 2 * max(device.channels, 1) else "warn",
               f"RTP ports {first}-{last} ({ports} ports; open them for UDP and TCP in the firewall)"
               + ("" if ports >= 2 * max(device.channels, 1) else f": fewer than 2 per channel ({device.channels})"))
    if device.contact and device.source_host:
        uri = SipUri.parse(device.contact)
        contact = f"{uri.host}:{uri.port or 5060}"
        seen = f"{device.source_host}:{device.source_port}"
        if contact != seen:
            report.add("warn", f"NAT: Contact says {contact} but REGISTER came from {seen}; we send to {seen}. "
                               "Keep keepalives shorter than the NAT's UDP timeout, or use TCP")
        else:
            report.add("ok", f"no NAT between us: Contact and source are both {seen} ({device.transport})")
    if device.keepalive_interval_s:
        report.add("ok", f"keepalive every {device.keepalive_interval_s:.0f} s (offline after 3 missed)")
    catalog = device.catalog
    if catalog.get("summary"):
        report.add("ok" if catalog.get("complete") else "warn", str(catalog["summary"]))
    elif device.state == "online":
        report.add("warn", "no Catalog answer yet")
    for query, reason in (device.status.get("query_failures") or {}).items():
        report.add("warn", f"{query} query failed: {reason}")
    if device.status.get("encoding_note"):
        report.add("warn", f"MANSCDP: {device.status['encoding_note']}")
    if device.status.get("last_refusal"):
        report.add("warn", f"last refused message: {device.status['last_refusal']}")
    invite = device.last_invite
    if invite:
        outcome = str(invite.get("outcome", "?"))
        report.add("ok" if outcome == "ok" else "fail",
                   f"last INVITE (channel {invite.get('channel', '?')}): {outcome}"
                   + (f": {invite['reason']}" if invite.get("reason") else ""))
    else:
        report.add("ok", "no INVITE yet")
    return report
