"""``sharpeyes gb ...``: GB/T 28181 devices (list, add, remove) and ``gb doctor``."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from config.times import format_local
from ingest.gb28181.doctor import diagnose
from sharpeyes.cli.gb_upstream import gb_backfill, gb_records, upstream_app
from sharpeyes.cli.output import console, fail, services
from storage.index.gb_devices import GbDeviceStore

gb_app = typer.Typer(help="GB/T 28181 devices that register to us (see docs/gb28181.md).", no_args_is_help=True)
device_app = typer.Typer(help="Add or remove a device (and its password).", no_args_is_help=True)
gb_app.add_typer(device_app, name="device")
gb_app.add_typer(upstream_app, name="upstream")
gb_app.command("records")(gb_records)
gb_app.command("backfill")(gb_backfill)


def _store(ctx: typer.Context) -> GbDeviceStore:
    svc = services(ctx)
    return GbDeviceStore(svc.engine, svc.cipher)


def _audit(ctx: typer.Context, action: str, device_id: str, detail: str) -> None:
    from streams.access.audit import AuditLog

    AuditLog(services(ctx).engine).append(user="cli", role="admin", client_ip="local", action=action,
                                          detail=f"device {device_id}{': ' + detail if detail else ''}")


@gb_app.command("devices")
def gb_devices(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="JSON output.")) -> None:
    """Devices: id, address, transport, last keepalive, channels, state (and why)."""
    svc = services(ctx)
    devices = _store(ctx).all()
    if as_json:
        typer.echo(json.dumps([d.as_dict() for d in devices], ensure_ascii=False, indent=2))  # never wrapped
        return
    zone = svc.settings.display_timezone
    table = Table("address", "transport", "last keepalive", "channels", "state", "reason")
    table.add_column("id", no_wrap=True, min_width=20)
    table.columns.insert(0, table.columns.pop())
    for d in devices:
        table.add_row(d.device_id, f"{d.source_host}:{d.source_port}" if d.source_host else "", d.transport,
                      format_local(d.last_keepalive_us, zone, "seconds") if d.last_keepalive_us else "never",
                      str(d.channels), d.state, d.reason)
    console.print(table)
    if not svc.settings.gb_sip_bind:
        console.print("GB/T 28181 is off: set SHARPEYES_GB_SIP_BIND (host:port) for 'sharpeyes run' to listen.")


@device_app.command("add")
def gb_device_add(ctx: typer.Context, device_id: str = typer.Argument(..., metavar="ID", help="20-digit device id."),
                  password: Optional[str] = typer.Option(None, help="Its own SIP password (else GB_PASSWORD)."),
                  media_transport: Optional[str] = typer.Option(
                      None, help="How it sends media: udp, tcp-passive (we listen), tcp-active (we connect); "
                      "'' for GB_MEDIA_TRANSPORT."),
                  ) -> None:
    """Let a device register: with its own password, or with GB_PASSWORD."""
    svc = services(ctx)
    try:
        new = _store(ctx).add(device_id, password, media_transport)
    except ValueError as exc:
        fail(str(exc))
    if password is None and not svc.settings.gb_password:
        console.print("note: no --password and GB_PASSWORD is empty: the device cannot register until one is set")
    _audit(ctx, "gb_device_add", device_id, "with its own password" if password else "")
    console.print(f"device {device_id} {'added' if new else 'updated'}")


@device_app.command("remove")
def gb_device_remove(ctx: typer.Context, device_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Forget a device. Its channels stay as cameras (remove them with 'camera remove')."""
    if not _store(ctx).remove(device_id):
        fail(f"device {device_id} is not known; see 'sharpeyes gb devices'")
    _audit(ctx, "gb_device_remove", device_id, "")
    console.print(f"device {device_id} removed")


@gb_app.command("doctor")
def gb_doctor(ctx: typer.Context, device_id: Optional[str] = typer.Argument(None, metavar="[ID]"),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Per device: media address and RTP ports, NAT (Contact vs source address), last INVITE."""
    svc = services(ctx)
    devices = _store(ctx).all()
    if device_id is not None:
        devices = [d for d in devices if d.device_id == device_id]
        if not devices:
            fail(f"device {device_id} is not known; see 'sharpeyes gb devices'")
    reports = [diagnose(svc.settings, d) for d in devices]
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in reports], ensure_ascii=False, indent=2))
        return
    if not svc.settings.gb_sip_bind:
        console.print("[yellow]warn[/yellow] GB_SIP_BIND is empty: no process listens for devices")
    for r in reports:
        console.print(f"[bold]{r.device_id}[/bold]")
        for level, text in r.findings:
            colour = {"ok": "green", "warn": "yellow", "fail": "red"}[level]
            console.print(f"  [{colour}]{level:4}[/{colour}] {text}", highlight=False)
    if not reports:
        console.print("no devices yet: add one with 'sharpeyes gb device add ID --password ...'")
