"""``sharpeyes export`` and ``sharpeyes verify``: evidence clips from the command line.

Wiring only: ``export`` runs ``storage.evidence.exports.ExportService`` in this process
against the configured index and store (no HTTP), and ``verify`` is
``storage.evidence.manifest.verify_clip``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from config.times import TimeError, parse_time
from sharpeyes.cli.output import console, err, fail
from sharpeyes.services import from_context
from streams.access.changes import Actor
from streams.access.audit import AuditLog
from storage.archive.clips import ClipError, NoRecordings
from storage.archive.clips import clip_file_name
from storage.evidence.exports import ExportError, ExportService, SegmentUnusable, manifest_file_name
from storage.evidence.manifest import verify_clip
from storage.objects.store import ObjectStoreUnavailable
from storage.evidence.signing import SigningKeyError, key_id, load_public_key, load_signing_key

def export(
    ctx: typer.Context,
    camera: str = typer.Argument(..., help="Camera id."),
    start: str = typer.Option(..., "--from", help="ISO 8601 (2027-01-15T16:00:00+08:00) or epoch ms; a time "
                              "without an offset is in display_timezone."),
    end: str = typer.Option(..., "--to", help="Same forms as --from."),
    reason: str = typer.Option("no reason given (CLI)", "--reason", help="Case number or request; goes into the manifest."),
    stream: str = typer.Option("main", "--stream", help="main or sub."),
    allow_gaps: bool = typer.Option(False, "--allow-gaps", help="Leave out missing or corrupt segments (listed in the manifest) instead of failing."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Clip file (default: {camera}_{start}_{end}.mp4 here). The manifest goes beside it as *.manifest.json."),
) -> None:
    """Export a clip with its signed manifest (clip.mp4 + clip.manifest.json)."""
    svc = from_context(ctx)
    try:
        zone = svc.settings.display_timezone
        s, e = parse_time(start, "--from", naive_zone=zone), parse_time(end, "--to", naive_zone=zone)
    except TimeError as exc:
        fail(str(exc), 2)
    service = ExportService(svc.engine, svc.index, svc.registry, svc.store, svc.settings.data_dir,
                            max_seconds=svc.settings.export_max_seconds)
    actor = Actor.os_user().name
    try:
        job = service.create(camera, s, e, reason, actor, stream=stream, allow_gaps=allow_gaps)
    except NoRecordings as exc:
        fail(str(exc))
    except ExportError as exc:
        fail(str(exc), 2)
    clip = output or Path(clip_file_name(camera, s, e))
    manifest = clip.with_name(manifest_file_name(clip.name))
    audit = AuditLog(svc.engine)
    audit.append(user=actor, role="admin", client_ip="local", action="export", camera_id=camera,
                 range_start_us=s, range_end_us=e,
                 detail=f"export={job.id} stream={stream} allow_gaps={allow_gaps} reason={reason[:200]} cli")
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(f"export {camera}", total=1.0)
        try:
            done = service.run(job.id, clip, manifest, on_progress=lambda f: bar.update(task, completed=f))
        except (SegmentUnusable, ClipError, ObjectStoreUnavailable, SigningKeyError, OSError) as exc:
            fail(f"export failed: {exc}")
    console.print(f"{clip}  {done.bytes} bytes  sha256 {done.clip_sha256}", highlight=False)
    console.print(f"{manifest}  (signed; check with: sharpeyes verify {clip})", highlight=False)


def verify(
    ctx: typer.Context,
    clip: Path = typer.Argument(..., help="The exported clip."),
    manifest: Optional[Path] = typer.Argument(None, help="Its manifest (default: the clip's name with .manifest.json)."),
    key: Optional[Path] = typer.Option(None, "--key", help="PEM public key of the exporting site (GET /api/keys/export). Default: this site's key."),
) -> None:
    """Check a clip against its manifest and the manifest's signature; exit 1 saying what failed."""
    manifest = manifest or clip.with_name(manifest_file_name(clip.name))
    try:
        if key is not None:
            public_key = load_public_key(key.read_bytes())
        else:
            public_key = load_signing_key(from_context(ctx).settings.data_dir, create=False).public_key()
    except (OSError, SigningKeyError) as exc:
        fail(f"no key to check with: {exc}; pass the exporting site's public key with --key", 2)
    report = verify_clip(clip, manifest, public_key)
    if not report.ok:
        for problem in report.problems:
            err.print(f"[red]FAILED[/red] {problem.code}: {problem.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    m = report.manifest or {}
    console.print(f"OK {clip}: sha256 {report.clip_sha256} matches {manifest}, signed by key {key_id(public_key)}", highlight=False, soft_wrap=True)
    console.print(f"   camera {m['camera']['id']} {m['stream']} {m['requested']['start']} .. {m['requested']['end']}, "
               f"exported by {m['exported_by']} at {m['exported_at']}; chain {'intact' if m['chain']['ok'] else 'BROKEN'}, "
               f"{len(m['gaps'])} gap(s), {m['skipped_segments']} skipped segment(s)", highlight=False, soft_wrap=True)
