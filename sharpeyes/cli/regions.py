"""``sharpeyes region ...``: the region tree (county -> township -> village)."""

from __future__ import annotations

from typing import Optional

import typer

from config.cameras import Region
from sharpeyes.cli.output import console, fail, services
from storage.index.registry import RegistryError
from streams.access.changes import Actor

region_app = typer.Typer(help="The region tree: county -> township -> village.", no_args_is_help=True)


@region_app.command("add")
def region_add(ctx: typer.Context, code: str, name: str,
               parent: Optional[str] = typer.Option(None, help="Code of the parent region (a township's county).")) -> None:
    """Add a region under an optional parent."""
    try:
        services(ctx).changes.add_region(Actor.os_user(), Region(code=code, name=name, parent=parent))
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
