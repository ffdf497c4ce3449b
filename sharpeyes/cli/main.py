"""The ``sharpeyes`` command line: the app, its global options, and every command group mounted.

Wiring only: every command calls into config/storage/ingest/streams. One module per
command group lives beside this one; ``output`` holds what they share.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from sharpeyes.cli.archive import recordings
from sharpeyes.cli.cameras import camera_app
from sharpeyes.cli.evidence import export, verify
from sharpeyes.cli.gb import gb_app
from sharpeyes.cli.health import status
from sharpeyes.cli.media import motion_command
from sharpeyes.cli.output import setup_logging
from sharpeyes.cli.processes import process_app
from sharpeyes.cli.regions import region_app
from sharpeyes.cli.scale import db_app, workers_app
from sharpeyes.cli.storage import storage_app
from sharpeyes.cli.users import audit_app, user_app
from sharpeyes.services import LazyServices

app = typer.Typer(help="sharpeyes: record, index and serve a county's security cameras.", no_args_is_help=True)
app.add_typer(camera_app, name="camera")
app.add_typer(region_app, name="region")
app.registered_commands.extend(process_app.registered_commands)
app.command("motion")(motion_command)
app.add_typer(user_app, name="user", help="Users, roles and region scopes.")
app.add_typer(audit_app, name="audit", help="Verify and export the audit trail.")
app.command("status")(status)
app.add_typer(storage_app, name="storage", help="Retention and object store lifecycle.")
app.command("recordings")(recordings)
app.command("export")(export)
app.command("verify")(verify)
app.add_typer(db_app, name="db", help="The index database (migrations).")
app.add_typer(workers_app, name="workers", help="Live ingest workers and their cameras.")
app.add_typer(gb_app, name="gb", help="GB/T 28181 devices that register to us.")


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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
