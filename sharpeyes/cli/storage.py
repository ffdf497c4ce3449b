"""``sharpeyes storage ...``: retention runs and S3 bucket lifecycle rules."""

from __future__ import annotations

import json

import typer

from sharpeyes.cli.output import console
from sharpeyes.services import from_context

storage_app = typer.Typer(help="Retention and object store lifecycle.", no_args_is_help=True)


@storage_app.command("lifecycle")
def lifecycle(
    ctx: typer.Context,
    apply: bool = typer.Option(False, "--apply", help="Set the rules on the S3 bucket (replaces its lifecycle)."),
    margin_days: int = typer.Option(1, min=0, help="Days past retention_days before the bucket expires an object, "
                                    "so the cleaner (SHARPEYES_RETENTION_INDEX_ONLY) removes the row first."),
) -> None:
    """Print (or apply) one S3 expiration rule per camera prefix, from each camera's retention_days.

    For stores where the cleaner should not walk objects. Bucket rules know nothing of
    legal holds: use them only on buckets with object lock, where holds set legal hold.
    """
    from storage.archive.retention import apply_lifecycle, lifecycle_rules
    from storage.objects.s3 import S3ObjectStore

    svc = from_context(ctx)
    rules = lifecycle_rules(svc.registry.cameras(), margin_days=margin_days)
    console.print_json(json.dumps(rules))
    if not apply:
        return
    store = svc.store
    if not isinstance(store, S3ObjectStore):
        console.print("[red]error:[/red] --apply needs an S3 store (set SHARPEYES_S3_ENDPOINT); "
                      "the local store is cleaned by the retention cleaner")
        raise typer.Exit(1)
    store.check()  # creates the bucket if missing, fails clearly if S3 is down
    apply_lifecycle(store._client, store.bucket, rules)  # noqa: SLF001 - the store's own client
    console.print(f"{len(rules)} lifecycle rule(s) set on bucket {store.bucket}")


@storage_app.command("retention")
def retention_once(ctx: typer.Context) -> None:
    """Run the retention cleaner once now (a running process also runs it periodically)."""
    from config.times import now_us
    from storage.archive.retention import RetentionCleaner

    from sharpeyes.process import retention_policy, store_free_bytes

    svc = from_context(ctx)
    cleaner = RetentionCleaner(svc.index, svc.store, svc.registry.cameras, clock=now_us,
                               policy=retention_policy(svc.settings), region_of=svc.registry.region_subtree,
                               free_bytes=store_free_bytes(svc.settings))
    r = cleaner.run_once()
    console.print(f"deleted {r.deleted_segments} segment(s), {r.deleted_bytes} bytes {r.by_rule}; "
                  f"{r.held_skipped} held segment(s) kept; {r.journal_finished} interrupted delete(s) finished")
