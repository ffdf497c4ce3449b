"""deploy/: compose.yaml against the Compose specification's schema, the Kubernetes
manifests against the Kubernetes OpenAPI schemas, and every command they run is a
real ``sharpeyes`` subcommand with real options."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import kubernetes_validate
import pytest
import typer
import yaml

from sharpeyes.cli.main import app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S_VERSION = "1.30"


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc


def test_compose_matches_the_compose_spec_schema() -> None:
    # check-jsonschema ships the Compose specification's JSON schema (vendor.compose-spec).
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(DEPLOY / "compose.yaml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_has_the_county_layout() -> None:
    services = compose()["services"]
    minio = [s for s in services if s.startswith("minio") and s[5:].isdigit()]
    assert len(minio) == 4
    assert "http://minio{1...4}/data{1...2}" in services["minio1"]["command"]  # distributed, erasure coded
    roles = [s["command"][1] for s in services.values() if s.get("command", [None])[0] == "sharpeyes"]
    assert roles.count("ingest") == 2 and roles.count("serve") == 2
    assert {"postgres", "nginx"} <= set(services)
    assert (DEPLOY / "nginx.conf").exists() and (DEPLOY / "Dockerfile").exists()


@pytest.mark.parametrize("name,doc", list(k8s_documents()), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kubernetes_has_workers_api_service_and_minio() -> None:
    kinds = {name.split(":")[1] for name, _ in k8s_documents()}
    assert {"Deployment/sharpeyes-ingest", "Deployment/sharpeyes-api", "Service/sharpeyes-api",
            "StatefulSet/minio", "ConfigMap/sharpeyes-config", "Job/sharpeyes-migrate"} <= kinds


# -- commands ----------------------------------------------------------------------


def deployed_commands() -> Iterator[tuple[str, list[str]]]:
    for name, svc in compose()["services"].items():
        cmd = svc.get("command")
        if isinstance(cmd, list) and cmd and cmd[0] == "sharpeyes":
            yield f"compose:{name}", cmd
    for name, doc in k8s_documents():
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec", {}) if "template" in spec else {}
        for c in pod.get("containers", []):
            if c.get("command", [None])[0] == "sharpeyes":
                yield f"k8s:{name}", c["command"] + c.get("args", [])
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
                argv[0] = Path(argv[0]).name
                yield f"systemd:{unit.name}", [a.replace("%i", "worker-1") for a in argv]
    yield "Dockerfile:CMD", ["sharpeyes", "run", "--http-bind", "0.0.0.0:8080"]


class BadCommand(Exception):
    pass


def resolve(argv: list[str]) -> None:
    """Parse ``argv`` with the real Typer app: an unknown command or option raises
    ``BadCommand``. (Deployed commands put no global options before the subcommand.)
    Duck-typed: recent Typer ships its own copy of click."""
    command = typer.main.get_command(app)
    args = list(argv[1:])
    parent = None
    name = "sharpeyes"
    while hasattr(command, "get_command") and args and not args[0].startswith("-"):
        ctx = command.context_class(command, info_name=name, parent=parent)
        name, args = args[0], args[1:]
        sub = command.get_command(ctx, name)
        if sub is None:
            raise BadCommand(f"no sharpeyes subcommand {name!r}")
        command, parent = sub, ctx
    try:
        command.make_context(name, args, parent=parent)
    except Exception as exc:  # the vendored click's UsageError
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise BadCommand(message) from exc


def test_every_deployed_command_is_a_real_sharpeyes_command() -> None:
    commands = list(deployed_commands())
    assert len(commands) >= 10
    for where, argv in commands:
        try:
            resolve(argv)
        except BadCommand as exc:
            pytest.fail(f"{where}: {' '.join(argv)}: {exc}")


def test_a_wrong_option_is_caught() -> None:
    with pytest.raises(BadCommand):
        resolve(["sharpeyes", "ingest", "--bogus", "x"])
    with pytest.raises(BadCommand):
        resolve(["sharpeyes", "db", "downgrade"])
    with pytest.raises(BadCommand):
        resolve(["sharpeyes", "ingestt"])
