"""``sharpeyes gb upstream ...`` (the cascade to upper platforms) and ``gb records`` / ``gb backfill``
(a channel's recordings on its device), the latter asked of the running process's API."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

import typer
from rich.table import Table

from sharpeyes.cli.output import console, fail, services
from storage.index.gb_upstreams import UpstreamStore

upstream_app = typer.Typer(help="Upper platforms we cascade to (city, province): we register to them and "
                                "answer their Catalog and INVITEs.", no_args_is_help=True)


def _store(ctx: typer.Context) -> UpstreamStore:
    svc = services(ctx)
    return UpstreamStore(svc.engine, svc.cipher)


@upstream_app.command("add")
def upstream_add(
    ctx: typer.Context,
    platform_id: str = typer.Argument(..., metavar="ID", help="The upper platform's 20-digit id."),
    domain: str = typer.Option(..., help="Its 10-digit domain (the realm it challenges with)."),
    host: str = typer.Option(..., help="Its SIP address."),
    port: int = typer.Option(5060, help="Its SIP port."),
    password: str = typer.Option(..., help="The password it gave us (digest, user = our GB_ID)."),
    transport: str = typer.Option("udp", help="udp or tcp."),
    region: list[str] = typer.Option([], "--region", help="Region code whose cameras it gets (repeat; "
                                     "sub-regions included)."),
) -> None:
    """Add (or replace) an upper platform; a running 'sharpeyes run' registers to it within seconds."""
    try:
        up = _store(ctx).add(platform_id, domain=domain, host=host, port=port, password=password,
                             transport=transport, regions=region)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"upstream {up.platform_id} at {up.host}:{up.port} ({up.transport}), regions "
                  f"{', '.join(up.regions) or '(none)'}")


@upstream_app.command("list")
def upstream_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Upper platforms: address, transport, regions, registration state (and why)."""
    ups = _store(ctx).all()
    if as_json:
        typer.echo(json.dumps([u.as_dict() for u in ups], ensure_ascii=False, indent=2))
        return
    table = Table("id", "address", "transport", "regions", "state", "reason")
    for u in ups:
        table.add_row(u.platform_id, f"{u.host}:{u.port}", u.transport, ",".join(u.regions), u.state, u.reason)
    console.print(table)


@upstream_app.command("remove")
def upstream_remove(ctx: typer.Context, platform_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Remove an upper platform; a running 'sharpeyes run' unregisters from it within seconds."""
    if not _store(ctx).remove(platform_id):
        fail(f"upstream {platform_id} not found; 'sharpeyes gb upstream list' shows them")
    console.print(f"upstream {platform_id} removed")


def _api(url: str, api_key: str | None, method: str, path: str, params: dict[str, str]) -> Any:
    req = urllib.request.Request(f"{url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}", method=method,
                                 headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        fail(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')[:300]}")
    except OSError as exc:
        fail(f"could not reach {url} ({exc}); GB/T 28181 device queries run in 'sharpeyes run' with GB_SIP_BIND")


_URL = typer.Option("http://127.0.0.1:8080", help="Base URL of the process that runs the SIP server.")
_KEY = typer.Option(None, envvar="SHARPEYES_API_KEY", help="API key (investigator for records, operator for backfill).")


def gb_records(ctx: typer.Context, camera: str = typer.Argument(..., metavar="CAMERA"),
               start: str = typer.Option(..., "--from", help="Start (ISO 8601, e.g. 2027-01-15T08:00+08:00)."),
               end: str = typer.Option(..., "--to", help="End."), url: str = _URL, api_key: Optional[str] = _KEY,
               as_json: bool = typer.Option(False, "--json")) -> None:
    """The channel's own recordings on its device (RecordInfo)."""
    body = _api(url, api_key, "GET", f"/api/cameras/{camera}/device-records", {"start": start, "end": end})
    if as_json:
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    table = Table("start", "end", "type", "name")
    for item in body["items"]:
        table.add_row(item["start"], item["end"], item["type"], item["name"])
    console.print(table)
    if not body["complete"]:
        console.print(f"[yellow]incomplete: {body['received']} of SumNum {body['sum_num']} arrived[/yellow]")


def gb_backfill(ctx: typer.Context, camera: str = typer.Argument(..., metavar="CAMERA"),
                start: str = typer.Option(..., "--from"), end: str = typer.Option(..., "--to"),
                url: str = _URL, api_key: Optional[str] = _KEY) -> None:
    """Download the device's recording of our gaps in the range into the archive (marked as from the device)."""
    body = _api(url, api_key, "POST", f"/api/cameras/{camera}/backfill", {"start": start, "end": end})
    for part in body["parts"]:
        console.print(f"gap {part['start_us']}..{part['end_us']}: {part['segments']} segment(s), "
                      f"{part['frames']} frames" + (f" - {part['error']}" if part["error"] else ""))
    console.print(f"{body['segments']} segment(s) backfilled")
