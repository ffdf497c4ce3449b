"""``sharpeyes status``: fleet health in the terminal, from the index (and a running process)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Optional

import typer
from rich.table import Table

from ingest.health.fleet import fleet_health
from sharpeyes.cli.output import console
from sharpeyes.services import from_context
from config.times import now_us



def status(
    ctx: typer.Context,
    url: Optional[str] = typer.Option(None, help="Base URL of a running process (e.g. http://127.0.0.1:8080): "
                                      "adds its live /api/health (spool backlog, live states)."),
    api_key: Optional[str] = typer.Option(None, envvar="SHARPEYES_API_KEY", help="Operator API key for --url."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Fleet online rate vs target, recording coverage per region (last hour), spool backlog."""
    svc = from_context(ctx)
    s = svc.settings
    report: dict[str, Any] = fleet_health(
        svc.registry, svc.index, now_us=now_us(), target=s.health_online_target,
        stale_us=int((2 * s.segment_target_seconds + 60) * 1_000_000),
    ).as_dict()
    if url:
        req = urllib.request.Request(url.rstrip("/") + "/api/health",
                                     headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                report = json.loads(r.read())
                report["source"] = url
        except OSError as exc:
            console.print(f"[yellow]could not read {url}/api/health ({exc}); showing the index only[/yellow]")
    if as_json:
        console.print_json(json.dumps(report))
        return
    mark = "[green]OK[/green]" if report["ok"] else "[red]BELOW TARGET[/red]"
    console.print(f"cameras online {report['online']}/{report['cameras']} "
                  f"= {report['online_rate']:.1%} (target {report['target']:.0%}) {mark}")
    table = Table("region", "cameras", "online", "coverage 1h")
    for r in report["regions"]:
        table.add_row(r["code"], str(r["cameras"]), str(r["online"]), f"{r['coverage_1h']:.1%}")
    console.print(table)
    down = [c for c in report["camera_health"] if not c["online"]]
    if down:
        t = Table("camera", "region", "state", "coverage 1h")
        for c in down:
            t.add_row(c["camera_id"], c["region"], c["state"], f"{c['coverage_1h']:.1%}")
        console.print("not recording:")
        console.print(t)
    if report.get("spool"):
        sp = report["spool"]
        console.print(f"spool backlog {sp['spool_backlog_segments']} segment(s), {sp['spool_backlog_bytes']} bytes "
                      f"(quota {sp['spool_quota_bytes']}); store {'up' if sp['store_available'] else 'DOWN'}; "
                      f"storage losses {sp['storage_losses']}")
