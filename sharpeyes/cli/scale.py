"""CLI for running at scale: ``sharpeyes db upgrade``, ``db partitions`` and ``sharpeyes workers``. Wiring only."""

from __future__ import annotations

import typer
from rich.table import Table

from config.times import iso_utc, now_us

db_app = typer.Typer(help="The index database.", no_args_is_help=True)
workers_app = typer.Typer(help="Ingest workers and the cameras they hold.", invoke_without_command=True)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Bring the index schema to the newest migration (run once before starting workers and API nodes)."""
    from sharpeyes.cli.output import console, services
    from storage.db.partitions import ensure_partitions

    engine = services(ctx).engine  # opening the engine runs the migrations
    created = ensure_partitions(engine, now_us=now_us())
    console.print(f"index at {engine.url.render_as_string(hide_password=True)} is up to date"
                  + (f"; created partitions {', '.join(created)}" if created else ""))


@db_app.command("partitions")
def db_partitions(ctx: typer.Context,
                  months_ahead: int = typer.Option(3, min=1, max=24, help="Create monthly partitions this far ahead."),
                  ) -> None:
    """PostgreSQL: create the monthly partitions of segments and gaps ahead and list them (run daily; retention
    does it too)."""
    from sharpeyes.cli.output import console, services
    from storage.db.partitions import PARTITIONED, ensure_partitions, partitions

    engine = services(ctx).engine
    created = ensure_partitions(engine, now_us=now_us(), months_ahead=months_ahead)
    with engine.connect() as conn:
        have = [p for table in PARTITIONED for p in partitions(conn, table)]
    if not have:
        console.print("segments and gaps are not partitioned here (SQLite): nothing to do")
        return
    out = Table("partition", "from (UTC)", "to (UTC)", "new")
    for p in have:
        out.add_row(p.name, iso_utc(p.start_us), iso_utc(p.end_us), "yes" if p.name in created else "")
    console.print(out)


@workers_app.callback()
def workers_list(ctx: typer.Context) -> None:
    """List live ingest workers, how many cameras each holds, and their advertised URLs."""
    from sharpeyes.cli.output import console, services
    from storage.index.leases import LeaseTable

    svc = services(ctx)
    table = LeaseTable(svc.engine)
    now = now_us()
    ttl = int(svc.settings.lease_ttl_seconds * 1_000_000)
    held: dict[str, int] = {}
    for lease in table.leases():
        if lease.held_at(now):
            held[lease.worker_id] = held.get(lease.worker_id, 0) + 1
    out = Table("worker", "cameras", "cap", "last seen (s ago)", "advertise url")
    for w in table.live_workers(now, ttl):
        out.add_row(w.worker_id, str(held.get(w.worker_id, 0)), str(w.capacity or "-"),
                    f"{(now - w.last_seen_us) / 1e6:.1f}", w.advertise_url)
    console.print(out)
