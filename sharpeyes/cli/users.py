"""``sharpeyes user ...`` and ``sharpeyes audit ...``: Typer sub-apps for the main CLI.

The main CLI mounts them (``app.add_typer(user_app, name="user")``,
``app.add_typer(audit_app, name="audit")``) and puts a ``sharpeyes.services.Services``
in ``ctx.obj``. No domain logic here: it lives in ``streams.access.users`` and ``streams.access.audit``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional


import typer
from rich.console import Console
from rich.table import Table

from config.times import TimeError, parse_time
from sharpeyes.services import Services, from_context
from streams.access.audit import AuditLog

if TYPE_CHECKING:
    from streams.access.anchor import AuditAnchor
from streams.access.changes import Actor
from streams.access.users import ALL_REGIONS, ROLES, UserError, UserStore

user_app = typer.Typer(help="Users, roles and region scopes.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail: verify the hash chain, export CSV.", no_args_is_help=True)

_out = Console()
_err = Console(stderr=True)


def _services(ctx: typer.Context) -> Services:
    return from_context(ctx)


def _read_password(password_stdin: bool, prompt: str = "Password") -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise typer.BadParameter("--password-stdin: no password on standard input")
        return password
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=True)


def _fail(exc: Exception) -> None:
    _err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Sign-in name."),
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
    region: Optional[list[str]] = typer.Option(
        None, "--region", help="Region code in scope (repeat for more); default: the whole county."
    ),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from the first line of stdin."),
) -> None:
    """Add a user with a role and a region scope."""
    services = _services(ctx)
    password = _read_password(password_stdin)
    try:
        user = services.changes.add_user(Actor.os_user(), name, password, role, region or [ALL_REGIONS])
    except UserError as exc:
        _fail(exc)
        return
    _out.print(f"added {user.name} ({user.role}, regions {', '.join(user.scope)})", highlight=False)


@user_app.command("passwd")
def user_passwd(
    ctx: typer.Context,
    name: str,
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from the first line of stdin."),
) -> None:
    """Set a user's password; their tokens stop working."""
    services = _services(ctx)
    password = _read_password(password_stdin, "New password")
    try:
        services.changes.passwd(Actor.os_user(), name, password)
    except UserError as exc:
        _fail(exc)
        return
    _out.print(f"password of {name} changed", highlight=False)


@user_app.command("disable")
def user_disable(ctx: typer.Context, name: str) -> None:
    """Disable a user: sign-in refused, tokens stop working at once."""
    services = _services(ctx)
    try:
        services.changes.disable(Actor.os_user(), name)
    except UserError as exc:
        _fail(exc)
        return
    _out.print(f"{name} disabled", highlight=False)


@user_app.command("list")
def user_list(ctx: typer.Context) -> None:
    """List users with role, scope and state."""
    users = UserStore(_services(ctx).engine).list()
    table = Table("name", "role", "regions", "state")
    for u in users:
        table.add_row(u.name, u.role, ", ".join(u.scope), "disabled" if u.disabled else "active")
    _out.print(table)


def _parse_time(value: str | None, name: str, zone: str) -> int | None:
    """``config.times.parse_time``, a time without an offset read in ``zone``."""
    if value is None:
        return None
    try:
        return parse_time(value, name, naive_zone=zone)
    except TimeError as exc:
        raise typer.BadParameter(str(exc)) from None


def _anchor(services: Services) -> "AuditAnchor":
    from streams.access.anchor import AuditAnchor

    settings = services.settings
    return AuditAnchor.open(services.engine, settings.data_dir, settings.audit_key_file, services.store)


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    anchor: Optional[list[Path]] = typer.Option(
        None, "--anchor", exists=True, dir_okay=False,
        help="An export manifest or an anchor JSON kept elsewhere; its signed audit head is checked too (repeat)."),
    key: Optional[Path] = typer.Option(None, "--key", exists=True, dir_okay=False,
                                       help="The audit public (or private) key PEM; default: the site's audit key."),
) -> None:
    """Check the audit chain against its signed checkpoints (database, object store, --anchor files).

    Exit 1 naming the first bad row, or the range of ids that is missing."""
    import json

    from storage.evidence.signing import load_public_key
    from storage.objects.store import ObjectStoreUnavailable
    from streams.access.anchor import Checkpoint, stored_anchors, verify_anchored

    services = _services(ctx)
    signer = _anchor(services)
    public = load_public_key(key.read_bytes()) if key is not None else signer.key.public_key()
    anchors = signer.database_checkpoints()
    try:
        anchors += stored_anchors(services.store)
    except ObjectStoreUnavailable as exc:
        _err.print(f"warning: the object store's anchors were not read: {exc}", highlight=False)
    for path in anchor or []:
        data = json.loads(path.read_text())
        anchors.append(Checkpoint.from_dict(data.get("audit_anchor", data)))
    result = verify_anchored(services.engine, AuditLog(services.engine), anchors, public)
    if result.ok:
        _out.print(f"audit chain OK: {result.rows_checked} rows, {result.anchors_checked} signed checkpoint(s) "
                   "agree", highlight=False)
        return
    where = (f"at row {result.bad_row_id}" if result.bad_row_id is not None else
             f"rows {result.missing[0]}..{result.missing[1]} missing" if result.missing else "")
    _err.print(f"audit chain BROKEN {where}: {result.reason}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(ctx: typer.Context) -> None:
    """Sign the audit chain's head now and anchor it in the object store (the server does it every minute)."""
    cp = _anchor(_services(ctx)).checkpoint(force=True)
    if cp is None:
        _out.print("the audit chain is empty: nothing to sign", highlight=False)
        return
    _out.print(f"checkpoint: {cp.count} rows up to {cp.audit_id}, head {cp.hash[:16]}…", highlight=False)


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    since: Optional[str] = typer.Option(None, "--from", help="Start, inclusive: ISO 8601 or epoch ms; a time without an offset is in display_timezone."),
    until: Optional[str] = typer.Option(None, "--to", help="End, exclusive: same forms as --from."),
    output: Path = typer.Option(..., "-o", "--output", help="CSV file to write ('-' for stdout)."),
) -> None:
    """Write audit rows in a time range as CSV, hashes included."""
    services = _services(ctx)
    tz = services.settings.display_timezone
    since_us, until_us = _parse_time(since, "--from", tz), _parse_time(until, "--to", tz)
    log = AuditLog(services.engine)
    if str(output) == "-":
        count = log.export_csv(sys.stdout, since_us=since_us, until_us=until_us)
    else:
        with output.open("w", encoding="utf-8", newline="") as f:
            count = log.export_csv(f, since_us=since_us, until_us=until_us)
    _err.print(f"{count} audit rows written to {output}", highlight=False)
