"""The ``sharpeyes`` command line. Wiring only: every command calls into config/storage/ingest/streams."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from config.cameras import Camera, Region
from config.fleet import FleetFileError, read_fleet_file
from config.redact import RedactingFilter, redact_url
from config.settings import Settings
from sharpeyes.services import LazyServices, Services, from_context
from storage.registry import RegistryError

app = typer.Typer(help="sharpeyes: record, index and serve a county's security cameras.", no_args_is_help=True)
camera_app = typer.Typer(help="Register and inspect cameras.", no_args_is_help=True)
region_app = typer.Typer(help="The region tree: county -> township -> village.", no_args_is_help=True)
app.add_typer(camera_app, name="camera")
app.add_typer(region_app, name="region")


def _mount_subcommands() -> None:
    from sharpeyes.cli_media import motion_command
    from sharpeyes.cli_archive import recordings
    from sharpeyes.cli_export import export, verify
    from sharpeyes.cli_users import audit_app, user_app

    app.command("motion")(motion_command)

    app.add_typer(user_app, name="user", help="Users, roles and region scopes.")
    app.add_typer(audit_app, name="audit", help="Verify and export the audit trail.")
    from sharpeyes.cli_health import status
    from sharpeyes.cli_storage import storage_app

    app.command("status")(status)
    app.add_typer(storage_app, name="storage", help="Retention and object store lifecycle.")
    app.command("recordings")(recordings)
    app.command("export")(export)
    app.command("verify")(verify)
    from sharpeyes.cli_scale import db_app, workers_app

    app.add_typer(db_app, name="db", help="The index database (migrations).")
    app.add_typer(workers_app, name="workers", help="Live ingest workers and their cameras.")


_mount_subcommands()

console = Console()
err = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("libav").setLevel(logging.ERROR)
    # Migrations are checked on every start; only their problems are news.
    logging.getLogger("alembic").setLevel(logging.WARNING)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML settings file (keys as in SHARPEYES_* without the prefix).", envvar="SHARPEYES_CONFIG"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data directory (index, objects, spool). Default ./data or SHARPEYES_DATA_DIR."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    if config is not None:
        os.environ["SHARPEYES_CONFIG"] = str(config)
    if data_dir is not None:
        os.environ["SHARPEYES_DATA_DIR"] = str(data_dir)
    setup_logging(verbose)
    ctx.obj = LazyServices()


def services(ctx: typer.Context) -> Services:
    try:
        return from_context(ctx)
    except Exception as exc:  # noqa: BLE001 - a settings error is the user's to fix
        fail(f"settings: {exc}")
        raise


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


# -- regions ------------------------------------------------------------------------


@region_app.command("add")
def region_add(ctx: typer.Context, code: str, name: str,
               parent: Optional[str] = typer.Option(None, help="Code of the parent region (a township's county).")) -> None:
    """Add a region under an optional parent."""
    try:
        services(ctx).registry.add_region(Region(code=code, name=name, parent=parent))
    except (ValueError, RegistryError) as exc:
        fail(str(exc))
    console.print(f"region {code} added")


@region_app.command("list")
def region_list(ctx: typer.Context) -> None:
    """List regions as a tree."""
    regions = services(ctx).registry.regions()
    children: dict[str | None, list[Region]] = {}
    for r in regions:
        children.setdefault(r.parent, []).append(r)

    def show(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            console.print(f"{'  ' * depth}{r.code}  {r.name}")
            show(r.code, depth + 1)

    show(None, 0)


# -- cameras ------------------------------------------------------------------------


def _camera_row(c: Camera) -> list[str]:
    return [c.id, c.name, c.region, "yes" if c.enabled else "no", redact_url(c.main_url),
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
                     enabled=not disabled, retention_override=retention_override)
        from ingest.transcode import check_profile

        check_profile(cam, services(ctx).settings)
        services(ctx).registry.add_camera(cam)
    except (ValueError, RegistryError) as exc:
        fail(_clean(exc))
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
    retention_days: Optional[int] = typer.Option(None),
    retention_override: Optional[bool] = typer.Option(None, "--retention-override/--no-retention-override",
                                                      help="Allow retention below the 30-day floor (an admin decision)."),
    transcode: Optional[str] = typer.Option(None),
    enable: Optional[bool] = typer.Option(None, "--enable/--disable", help="Start or stop recording."),
) -> None:
    """Change a camera. A running process picks the change up within seconds."""
    changes = {k: v for k, v in {
        "name": name, "region": region, "main_url": url, "sub_url": sub_url, "rtsp_transport": transport,
        "retention_days": retention_days, "retention_override": retention_override, "transcode": transcode,
        "enabled": enable}.items() if v is not None}
    if not changes:
        fail("nothing to change; see 'sharpeyes camera edit --help'")
    try:
        services(ctx).registry.update_camera(camera_id, **changes)
    except (ValueError, RegistryError) as exc:
        fail(_clean(exc))
    console.print(f"camera {camera_id} updated")


@camera_app.command("remove")
def camera_remove(ctx: typer.Context, camera_id: str = typer.Argument(..., metavar="ID")) -> None:
    """Unregister a camera. Its recordings stay until retention removes them."""
    try:
        services(ctx).registry.remove_camera(camera_id)
    except RegistryError as exc:
        fail(str(exc))
    console.print(f"camera {camera_id} removed")


@camera_app.command("import")
def camera_import(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                                                   help="CSV or YAML fleet file.")) -> None:
    """Register many cameras from CSV or YAML: all of them, or none if any row is bad."""
    try:
        cams = read_fleet_file(file)
        services(ctx).registry.add_cameras(cams)
    except FleetFileError as exc:
        err.print(f"[red]error:[/red] {file}: {len(exc.errors)} bad row(s), nothing imported")
        for e in exc.errors:
            err.print(f"  {e}")
        raise typer.Exit(1)
    except (ValueError, RegistryError) as exc:
        fail(f"{file}: nothing imported:\n{exc}")
    console.print(f"{len(cams)} camera(s) imported from {file}")


@camera_app.command("probe")
def camera_probe(ctx: typer.Context, target: str = typer.Argument(..., metavar="ID-or-URL"),
                 stream: str = typer.Option("main", help="main or sub, when probing a registered camera."),
                 timeout: float = typer.Option(10.0, help="Give up after this many seconds."),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Connect to a camera and print codec, resolution, fps and bitrate, or why it failed."""
    from ingest.probe import probe_url

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
        from sharpeyes.cli_media import print_profile_costs

        print_profile_costs(console, result.width, result.height)
    else:
        err.print(f"[red]{result.state}[/red]: {result.message}")
    if not result.ok:
        raise typer.Exit(2)


def _public(c: Camera) -> dict:
    d = c.model_dump()
    d["main_url"] = redact_url(c.main_url)
    d["sub_url"] = redact_url(c.sub_url) if c.sub_url else None
    return d


def _clean(exc: Exception) -> str:
    """pydantic's messages, without its URL footer, one problem a line."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
    return str(exc)


# -- processes ----------------------------------------------------------------------


TlsCert = Annotated[Optional[Path], typer.Option("--tls-cert", exists=True, dir_okay=False,
                                                 help="PEM certificate: serve HTTPS with HSTS (with --tls-key).")]
TlsKey = Annotated[Optional[Path], typer.Option("--tls-key", exists=True, dir_okay=False,
                                                help="PEM private key of --tls-cert.")]


def with_tls(svc: Services, tls_cert: Optional[Path], tls_key: Optional[Path]) -> Services:
    """Apply --tls-cert/--tls-key over the settings (both or neither)."""
    if tls_cert is not None or tls_key is not None:
        if tls_cert is None or tls_key is None:
            fail("--tls-cert and --tls-key go together: give both PEM files")
        svc.settings.tls_cert, svc.settings.tls_key = tls_cert, tls_key
    return svc


@app.command("run")
def run(ctx: typer.Context,
        http_bind: Optional[str] = typer.Option(None, help="host:port for the API and console (default SHARPEYES_HTTP_BIND or 127.0.0.1:8080)."),
        tls_cert: TlsCert = None,
        tls_key: TlsKey = None,
        ) -> None:
    """Everything in one process: record every enabled camera and serve the API and console."""
    from sharpeyes.process import run_process

    run_process(with_tls(services(ctx), tls_cert, tls_key), http_bind=http_bind, ingest=True, serve=True)


@app.command("ingest")
def ingest_cmd(ctx: typer.Context,
               worker_id: Optional[str] = typer.Option(None, help="Name of this worker (default: host name)."),
               http_bind: Optional[str] = typer.Option(None, help="host:port for this worker's live and metrics endpoints."),
               leases: bool = typer.Option(True, "--leases/--no-leases", help="Share the cameras with other workers by lease (default), or record them all."),
               advertise_url: Optional[str] = typer.Option(None, help="This worker's HTTP base URL for API nodes' live redirects (default SHARPEYES_ADVERTISE_URL)."),
               ) -> None:
    """An ingest worker: record its share of the cameras (and serve their live feeds), no console."""
    from sharpeyes.process import run_process

    svc = services(ctx)
    if worker_id:
        svc.settings.worker_id = worker_id
    svc.settings.use_leases = leases
    if advertise_url:
        svc.settings.advertise_url = advertise_url
    run_process(svc, http_bind=http_bind, ingest=True, serve=False)


@app.command("serve")
def serve_cmd(ctx: typer.Context,
              http_bind: Optional[str] = typer.Option(None, help="host:port for the API and console."),
              tls_cert: TlsCert = None,
              tls_key: TlsKey = None,
              ) -> None:
    """A stateless API and console node (no recording)."""
    from sharpeyes.process import run_process

    run_process(with_tls(services(ctx), tls_cert, tls_key), http_bind=http_bind, ingest=False, serve=True)


@app.command("demo")
def demo(ctx: typer.Context,
         cameras: int = typer.Option(4, min=1, max=64, help="How many simulated cameras."),
         sim_port: int = typer.Option(8560, help="Port of the simulated cameras' RTSP server (127.0.0.1)."),
         http_bind: Optional[str] = typer.Option(None, help="host:port for the API and console."),
         ) -> None:
    """Simulated cameras plus `run`: a first look with nothing else installed.

    Starts N simulated 720p cameras (with 360p sub-streams) on 127.0.0.1, registers
    them under a demo county, records them and serves the console.
    """
    from streams.background import BackgroundLoop
    from streams.demo import register_demo
    from streams.simulated import start_simulated_cameras
    from sharpeyes.process import run_process

    svc = services(ctx)
    console.print(f"preparing {cameras} simulated camera(s) (first start encodes their loops, a few seconds each)...")
    loop = BackgroundLoop("simulated-cameras")
    try:
        sim = loop.run(start_simulated_cameras(cameras, svc.settings.data_dir, "127.0.0.1", sim_port))
    except OSError as exc:
        loop.stop()
        fail(f"cannot start the simulated cameras on 127.0.0.1:{sim_port}: {exc}; pick another --sim-port")
    try:
        registered = register_demo(svc.registry, sim.urls)
        console.print(f"{len(registered)} simulated camera(s) at rtsp://127.0.0.1:{sim.server.port}/sim-N "
                      f"(data in {svc.settings.data_dir})")
        run_process(svc, http_bind=http_bind, ingest=True, serve=True)
    finally:
        loop.run(sim.close(), timeout=5)
        loop.stop()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
