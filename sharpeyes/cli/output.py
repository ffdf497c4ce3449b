"""What every command shares: the consoles, ``fail``, log set-up, and the process's services."""

from __future__ import annotations

import logging

import typer
from rich.console import Console

from config.redact import RedactingFilter
from sharpeyes.services import Services, from_context

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


def services(ctx: typer.Context) -> Services:
    try:
        return from_context(ctx)
    except Exception as exc:  # noqa: BLE001 - a settings error is the user's to fix
        fail(f"settings: {exc}")
        raise


def fail(message: str, code: int = 1) -> None:
    """Print ``message`` as an error and exit with ``code``."""
    err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def clean_error(exc: Exception) -> str:
    """pydantic's messages, without its URL footer, one problem a line."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
    return str(exc)

