"""``sharpeyes camera ...``: register, list, show, edit, remove, import and probe cameras.

Changes go through ``streams.access.changes`` and are audited as the operating-system user."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from config.cameras import Camera
from config.fleet import FleetFileError, read_fleet_file
from config.redact import redact_url
from sharpeyes.cli.output import clean_error, console, err, fail, services
from storage.index.registry import RegistryError
from streams.access.changes import Actor, NotInScope

camera_app = typer.Typer(help="Register and inspect cameras.", no_args_is_help=True)


def _camera_row(c: Camera) -> list[str]:
    region = c.region if c.region_note is None else f"{c.region} (CivilCode {c.gb_civil_code} not registered)"
    main = redact_url(c.main_url) if c.source == "rtsp" else f"GB/T 28181 device {c.gb_device_id}"
    return [c.id, c.name, region, "yes" if c.enabled else "no", main,
            redact_url(c.sub_url) if c.sub_url else "", c.rtsp_transport, str(c.retention_days), c.transcode]


@camera_app.command("add")
def camera_add(
    ctx: typer.Context,
    camera_id: str = typer.Argument(..., metavar="ID", help="GB/T 28181 20-digit code or a slug [a-z0-9-]."),
    name: str = typer.Option(..., help="Display name."),
    region: str = typer.Option(..., help="Region code (must exist)."),
    url: str = typer.Option(..., help="Main stream rtsp:// or rtsps:// URL."),
    sub_url: Optional[str] = typer.Option(None, help="Sub-stream URL, if the camera has one."),
    transport: str = typer.Option("tcp", help="RTSP transport: tcp or udp."),
    puller: Optional[str] = typer.Option(None, help="native (our RTSP client) or ffmpeg (PyAV's demuxer); "
                                         "default: the ingest_puller setting (native)."),
    retention_days: int = typer.Option(30, help="Days to keep recordings (at least 30 without --retention-override)."),
    retention_override: bool = typer.Option(False, "--retention-override",
                                            help="Allow retention below the 30-day floor (an admin decision)."),
    transcode: str = typer.Option("none", help="Transcode profile: none, live-h264, sub, archive-h264."),
    disabled: bool = typer.Option(False, "--disabled", help="Register without recording."),
) -> None:
    """Register one camera. A running `sharpeyes run` starts recording it within seconds."""
    try:
        cam = Camera(id=camera_id, name=name, region=region, main_url=url, sub_url=sub_url,
                     rtsp_transport=transport, retention_days=retention_days, transcode=transcode,
                     enabled=not disabled, retention_override=retention_override,
                     puller=puller)  # type: ignore[arg-type]
        from ingest.media.transcode import check_profile

        check_profile(cam, services(ctx).settings)
        services(ctx).changes.add_camera(Actor.os_user(), cam)
    except (ValueError, RegistryError) as exc:
        fail(clean_error(exc))
    console.print(f"camera {camera_id} added")


@camera_app.command("list")
def camera_list(ctx: typer.Context, region: Optional[str] = typer.Option(None, help="Only this region and below."),
                as_json: bool = typer.Option(False, "--json", help="JSON output (passwords redacted).")) -> None:
    """List registered cameras (passwords are never shown)."""
    cams = services(ctx).registry.cameras(region=region)
    if as_json:
        console.print_json(json.dumps([_public(c) for c in cams]))
        return
    table = Table("id", "name", "region", "enabled", "main", "sub", "transport", "retention", "transcode")
    for c in cams:
        table.add_row(*_camera_row(c))
    console.print(table)


@camera_app.command("show")
def camera_show(ctx: typer.Context, camera_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Show one camera and its recording status from the index."""
    svc = services(ctx)
    cam = svc.registry.camera(camera_id)
    if cam is None:
        fail(f"camera {camera_id} is not registered; see 'sharpeyes camera list'")
    info = _public(cam)  # type: ignore[arg-type]
    last = svc.index.last_segment(camera_id, "main")
    info["last_segment_end_us"] = last.end_us if last else None
    info["open_gaps"] = [{"start_us": g.start_us, "reason": g.reason} for g in svc.index.open_gaps(camera_id, "main")]
    console.print_json(json.dumps(info))


@camera_app.command("edit")
def camera_edit(
    ctx: typer.Context,
    camera_id: str = typer.Argument(..., metavar="ID"),
    name: Optional[str] = typer.Option(None),
    region: Optional[str] = typer.Option(None),
    url: Optional[str] = typer.Option(None, help="New main stream URL."),
    sub_url: Optional[str] = typer.Option(None, help="New sub-stream URL ('' to remove)."),
    transport: Optional[str] = typer.Option(None),
    puller: Optional[str] = typer.Option(None, help="native or ffmpeg."),
    retention_days: Optional[int] = typer.Option(None),
    retention_override: Optional[bool] = typer.Option(None, "--retention-override/--no-retention-override",
                                                      help="Allow retention below the 30-day floor (an admin decision)."),
    transcode: Optional[str] = typer.Option(None),
    enable: Optional[bool] = typer.Option(None, "--enable/--disable", help="Start or stop recording."),
) -> None:
    """Change a camera. A running process picks the change up within seconds."""
    changes = {k: v for k, v in {
        "name": name, "region": region, "main_url": url, "sub_url": sub_url, "rtsp_transport": transport,
        "puller": puller, "retention_days": retention_days, "retention_override": retention_override, "transcode": transcode,
        "enabled": enable}.items() if v is not None}
    if not changes:
        fail("nothing to change; see 'sharpeyes camera edit --help'")
    try:
        services(ctx).changes.edit_camera(Actor.os_user(), camera_id, changes)
    except NotInScope:
        fail(f"camera {camera_id} is not registered; see 'sharpeyes camera list'")
    except (ValueError, RegistryError) as exc:
        fail(clean_error(exc))
    console.print(f"camera {camera_id} updated")


@camera_app.command("remove")
def camera_remove(ctx: typer.Context, camera_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Unregister a camera. Its recordings stay until retention removes them."""
    try:
        services(ctx).changes.remove_camera(Actor.os_user(), camera_id)
    except NotInScope:
        fail(f"camera {camera_id} is not registered; see 'sharpeyes camera list'")
    except RegistryError as exc:
        fail(str(exc))
    console.print(f"camera {camera_id} removed")


@camera_app.command("import")
def camera_import(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                                   help="CSV or YAML fleet file.")) -> None:
    """Register many cameras from CSV or YAML: all of them, or none if any row is bad."""
    try:
        cams = read_fleet_file(file)
        services(ctx).changes.import_cameras(Actor.os_user(), cams, source=str(file))
    except FleetFileError as exc:
        err.print(f"[red]error:[/red] {file}: {len(exc.errors)} bad row(s), nothing imported")
        for e in exc.errors:
            err.print(f"  {e}")
        raise typer.Exit(1) from None
    except (ValueError, RegistryError) as exc:
        fail(f"{file}: nothing imported:\n{exc}")
    console.print(f"{len(cams)} camera(s) imported from {file}")


@camera_app.command("probe")
def camera_probe(ctx: typer.Context, target: str = typer.Argument(..., metavar="ID-or-URL"),
                 stream: str = typer.Option("main", help="main or sub, when probing a registered camera."),
                 timeout: float = typer.Option(10.0, help="Give up after this many seconds."),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Connect to a camera and print codec, resolution, fps and bitrate, or why it failed."""
    from ingest.recording.probe import probe_url

    transport = "tcp"
    url = target
    camera_id = "probe"
    if "://" not in target:
        cam = services(ctx).registry.camera(target)
        if cam is None:
            fail(f"camera {target} is not registered; give a registered id or an rtsp:// URL")
        assert cam is not None
        url = cam.stream_url(stream)  # type: ignore[arg-type,assignment]
        if not url:
            fail(f"camera {target} has no {stream} stream")
        transport, camera_id = cam.rtsp_transport, cam.id
    result = probe_url(url, transport=transport, timeout=timeout, camera_id=camera_id)  # type: ignore[arg-type]
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
    elif result.ok:
        console.print(f"{result.url}\n  codec {result.codec}  {result.width}x{result.height}  "
                      f"{result.fps:g} fps  {result.bitrate_kbps:g} kbit/s  keyframe every {result.keyframe_interval_s:g} s"
                      + (f"  audio {result.audio_codec}" if result.audio_codec else ""))
        from sharpeyes.cli.media import print_profile_costs

        print_profile_costs(console, result.width, result.height)
    else:
        err.print(f"[red]{result.state}[/red]: {result.message}")
    if not result.ok:
        raise typer.Exit(2)


def _public(c: Camera) -> dict[str, Any]:
    d = c.model_dump()
    d["main_url"] = redact_url(c.main_url)
    d["sub_url"] = redact_url(c.sub_url) if c.sub_url else None
    d["region_note"] = c.region_note
    return d
