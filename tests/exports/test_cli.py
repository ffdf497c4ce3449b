"""``sharpeyes export`` and ``sharpeyes verify`` through the real CLI app (typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from sharpeyes.cli.main import app
from storage.evidence.signing import public_key_pem
from tests.exports.conftest import CAMERA, Site


def test_cli_export_then_verify(local_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARPEYES_DATA_DIR", str(local_site.settings.data_dir))
    run = CliRunner().invoke
    out = tmp_path / "out" / "clip.mp4"
    out.parent.mkdir()
    r = run(app, ["export", CAMERA, "--from", "2027-01-15T16:00:01+08:00", "--to", "2027-01-15T08:00:07Z",
                  "--reason", "case 2026-17", "-o", str(out)])
    assert r.exit_code == 0, r.output
    manifest_path = out.with_name("clip.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["reason"] == "case 2026-17" and manifest["exported_by"].startswith("cli:")
    assert manifest["requested"]["end"] == "2027-01-15T08:00:07.000Z"
    assert [e.action for e in local_site.audit.query(action="export")] == ["export"]

    r = run(app, ["verify", str(out)])
    assert r.exit_code == 0 and r.output.startswith("OK "), r.output

    data = bytearray(out.read_bytes())
    data[-5] ^= 0x01
    out.write_bytes(bytes(data))
    r = run(app, ["verify", str(out), str(manifest_path)])
    assert r.exit_code == 1 and "clip_altered" in r.output and "the clip was altered" in r.output
    assert "manifest_altered" not in r.output
    data[-5] ^= 0x01
    out.write_bytes(bytes(data))

    manifest["covered"]["start_us"] += 1
    manifest_path.write_text(json.dumps(manifest))
    r = run(app, ["verify", str(out)])
    assert r.exit_code == 1 and "manifest_altered" in r.output and "clip_altered" not in r.output

    other = tmp_path / "other.pem"
    other.write_text(public_key_pem(Ed25519PrivateKey.generate().public_key()))
    r = run(app, ["verify", str(out), "--key", str(other)])
    assert r.exit_code == 1 and "wrong_key" in r.output


def test_cli_export_refuses_bad_input(local_site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARPEYES_DATA_DIR", str(local_site.settings.data_dir))
    run = CliRunner().invoke
    r = run(app, ["export", CAMERA, "--from", "08:00 yesterday", "--to", "2027-01-15T08:00:07Z",
                  "-o", str(tmp_path / "c.mp4")])
    assert r.exit_code == 2 and "is not a time" in r.output
    local_site.store.delete(local_site.segments[0].object_key)
    r = run(app, ["export", CAMERA, "--from", "2027-01-15T08:00:00Z", "--to", "2027-01-15T08:00:03Z",
                  "-o", str(tmp_path / "c.mp4")])
    assert r.exit_code == 1 and local_site.segments[0].object_key in r.output and "allow_gaps" in r.output
    assert not (tmp_path / "c.mp4").exists()
