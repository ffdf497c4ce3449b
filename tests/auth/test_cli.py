"""``sharpeyes user`` and ``sharpeyes audit`` against a Services object, as the main CLI wires them."""

from __future__ import annotations

import csv

import typer
from sqlalchemy import text
from typer.testing import CliRunner

from config.settings import Settings
from config.cameras import Region
from sharpeyes.cli.users import audit_app, user_app
from sharpeyes.services import Services


def _cli(tmp_path) -> tuple[typer.Typer, Services]:  # type: ignore[no-untyped-def]
    services = Services(Settings(data_dir=tmp_path))
    root = typer.Typer()

    @root.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = services

    root.add_typer(user_app, name="user")
    root.add_typer(audit_app, name="audit")
    return root, services


def test_user_commands_and_audit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app, services = _cli(tmp_path)
    services.registry.add_region(Region(code="t1", name="Town 1"))
    run = CliRunner().invoke
    r = run(app, ["user", "add", "zhang", "--role", "investigator", "--region", "t1", "--password-stdin"], input="zhangs password\n")
    assert r.exit_code == 0, r.output
    r = run(app, ["user", "add", "zhang", "--role", "viewer", "--password-stdin"], input="whatever long\n")
    assert r.exit_code == 1 and "already exists" in r.output
    r = run(app, ["user", "add", "li", "--role", "chief", "--password-stdin"], input="whatever long\n")
    assert r.exit_code == 1 and "viewer, investigator, operator, admin" in r.output
    r = run(app, ["user", "add", "wang", "--role", "viewer"], input="wangs password\nwangs password\n")
    assert r.exit_code == 0, r.output
    assert run(app, ["user", "passwd", "zhang", "--password-stdin"], input="a newer password\n").exit_code == 0
    assert run(app, ["user", "disable", "wang"]).exit_code == 0
    r = run(app, ["user", "list"])
    assert "zhang" in r.output and "investigator" in r.output and "disabled" in r.output
    with services.engine.connect() as c:
        hashes = [h for (h,) in c.execute(text("SELECT password_hash FROM users"))]
    assert all(h.startswith("$argon2id$") and "password" not in h for h in hashes)

    r = run(app, ["audit", "verify"])
    assert r.exit_code == 0 and "4 rows" in r.output, r.output
    out = tmp_path / "audit.csv"
    r = run(app, ["audit", "export", "--from", "2000-01-01", "--to", "2100-01-01", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert [row["action"] for row in rows] == ["user_add", "user_add", "user_passwd", "user_disable"]
    assert rows[0]["user"].startswith("cli:")
    r = run(app, ["audit", "export", "--to", "1999-01-01", "-o", str(out)])
    assert len(list(csv.DictReader(out.open()))) == 0

    with services.engine.begin() as c:
        c.execute(text("UPDATE audit SET detail = 'target=nobody' WHERE id = 2"))
    r = run(app, ["audit", "verify"])
    assert r.exit_code == 1 and "row 2" in r.output, r.output
