"""``sharpeyes motion`` and the profile cost table of ``sharpeyes camera probe``. Wiring only."""

from __future__ import annotations


import typer
from rich.console import Console
from rich.table import Table

from config.times import TimeError, format_local, parse_time
from sharpeyes.cli.output import console, err
from sharpeyes.services import from_context



def motion_command(
    ctx: typer.Context,
    camera_id: str = typer.Argument(..., metavar="CAMERA"),
    start: str = typer.Option(..., "--from", help="Start: ISO 8601 or epoch ms; a time without an offset "
                              "(2026-11-27T02:00) is in display_timezone."),
    end: str = typer.Option(..., "--to", help="End, same forms."),
    min_level: int = typer.Option(1, help="Only seconds at or over this level (1..255)."),
) -> None:
    """List the spans with motion on a camera between two times."""
    from storage.index.media import MediaIndex

    services = from_context(ctx)
    tz = services.settings.display_timezone
    try:
        s, e = parse_time(start, "--from", naive_zone=tz), parse_time(end, "--to", naive_zone=tz)
    except TimeError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if services.registry.camera(camera_id) is None:
        err.print(f"[red]camera {camera_id} is not registered; see 'sharpeyes camera list'[/red]")
        raise typer.Exit(1)
    spans = MediaIndex(services.engine).motion_spans([camera_id], s // 1_000_000, -(-e // 1_000_000), min_level)
    table = Table("start", "end", "seconds", "peak")
    for span in spans:
        table.add_row(_fmt(span.start_s, tz), _fmt(span.end_s, tz), str(span.end_s - span.start_s), str(span.peak))
    console.print(table)
    console.print(f"{len(spans)} span(s) with motion")


def _fmt(second: int, zone: str) -> str:
    return format_local(second * 1_000_000, zone, timespec="seconds")


def print_profile_costs(console: Console, width: int, height: int) -> None:
    """The estimated CPU of each transcode profile for a camera of this size."""
    from ingest.media.transcode import PROFILES, estimate_cpu_percent

    table = Table("profile", "CPU (% of a core)", "cameras per core", title="estimated cost per camera "
                  "(measured by tests/bench/transcode.py; with snapshots and motion)")
    for profile in PROFILES:
        est = estimate_cpu_percent(profile, width, height)
        total = est["total"]
        table.add_row(profile, f"{total:.1f}", f"{100 / total:.0f}" if total else "-")
    console.print(table)
