"""``sharpeyes recordings CAMERA --from --to``: the archive timeline as a table.

Wiring only: the timeline is ``storage.archive.timeline``; its answer (the same as
``GET /api/cameras/{id}/recordings``) is ``streams.api.archive.timeline_view``.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from config.times import TimeError, format_local, parse_time
from sharpeyes.cli.output import console, err
from sharpeyes.services import from_context
from storage.archive.timeline import timeline
from streams.api.archive import timeline_view



def _duration(ms: int) -> str:
    s = ms // 1000
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}.{ms % 1000:03d}"


def recordings(
    ctx: typer.Context,
    camera: str = typer.Argument(..., help="Camera id."),
    start: str = typer.Option(..., "--from", help="ISO 8601 (2027-01-15T16:00:00+08:00) or epoch ms; a time "
                              "without an offset is in display_timezone."),
    end: str = typer.Option(..., "--to", help="Same forms as --from."),
    stream: str = typer.Option("main", "--stream", help="main or sub."),
    as_json: bool = typer.Option(False, "--json", help="Print the API's JSON answer instead of a table."),
) -> None:
    """Recorded runs and gaps (with reasons) of one camera over a time range."""
    if stream not in ("main", "sub"):
        err.print(f"[red]error:[/red] --stream {stream!r}: use main or sub")
        raise typer.Exit(2)
    try:
        zone = from_context(ctx).settings.display_timezone
        s, e = parse_time(start, "--from", naive_zone=zone), parse_time(end, "--to", naive_zone=zone)
        if s >= e:
            raise TimeError("--from must be before --to")
    except TimeError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    services = from_context(ctx)
    if services.registry.camera(camera) is None:
        err.print(f"[red]error:[/red] camera {camera} is not registered; see sharpeyes camera list")
        raise typer.Exit(1)
    view = timeline_view(timeline(services.index, camera, stream, s, e), services.settings)
    if as_json:
        console.print_json(json.dumps(view))
        return
    off = view["display_offset"]
    table = Table(title=f"{camera}/{stream} {view['start']} .. {view['end']} (local = {view['display_timezone']} {off})")
    for col in ("", "start (UTC)", "end (UTC)", "start (local)", "duration", "segments / reason", "detail"):
        table.add_column(col, overflow="fold")
    rows = [(r["start_ms"], "run", r, str(r["segments"]), f"{r['bytes']:,} bytes") for r in view["runs"]]
    rows += [(g["start_ms"], "gap", g, g["reason"], g["detail"]) for g in view["gaps"]]
    for _t, kind, item, what, detail in sorted(rows, key=lambda x: x[0]):
        style = "green" if kind == "run" else "red"
        table.add_row(f"[{style}]{kind}[/{style}]", item["start"], item["end"], format_local(item["start_ms"] * 1000, view["display_timezone"]),
                      _duration(item["duration_ms"]), what, detail)
    console.print(table)
    recorded = sum(r["duration_ms"] for r in view["runs"])
    console.print(f"recorded {_duration(recorded)} in {len(view['runs'])} run(s); {len(view['gaps'])} gap(s)")
