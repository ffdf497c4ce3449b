"""The registry commands as an operator uses them: clear errors, nothing written on bad input."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sharpeyes.cli.main import app
from tests.support.cameras import Mount

GB_CAMERA = "34012345001320000001"  # division 34012345, type 132 (network camera)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SHARPEYES_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def run(*args: str, ok: bool = True):  # type: ignore[no-untyped-def]
        result = runner.invoke(app, list(args))
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
        return result

    run("region", "add", "c1", "County")
    run("region", "add", "t1", "Township", "--parent", "c1")
    return run


def camera_ids(cli) -> list[str]:  # type: ignore[no-untyped-def]
    return [c["id"] for c in json.loads(cli("camera", "list", "--json").output)]


def test_add_list_show_edit_remove(cli) -> None:  # type: ignore[no-untyped-def]
    cli("camera", "add", GB_CAMERA, "--name", "Gate", "--region", "t1", "--url", "rtsp://admin:hunter2@10.0.0.5/ch1")
    listed = cli("camera", "list", "--json").output
    assert GB_CAMERA in listed and "hunter2" not in listed
    shown = cli("camera", "show", GB_CAMERA).output
    assert "hunter2" not in shown and "***@10.0.0.5" in shown
    cli("camera", "edit", GB_CAMERA, "--disable", "--retention-days", "45")
    cam = json.loads(cli("camera", "list", "--json").output)[0]
    assert cam["enabled"] is False and cam["retention_days"] == 45
    cli("camera", "remove", GB_CAMERA)
    assert camera_ids(cli) == []


@pytest.mark.parametrize("args, message", [
    (["--url", "http://10.0.0.5/ch1"], "rtsp://"),
    (["--url", "rtsp://10.0.0.5/ch1", "--region", "nowhere"], "region nowhere does not exist"),
])
def test_bad_camera_is_refused_with_the_reason(cli, args, message) -> None:  # type: ignore[no-untyped-def]
    base = {"--name": "x", "--region": "t1", "--url": "rtsp://10.0.0.5/ch1"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    result = cli("camera", "add", "cam-x", *flat, ok=False)
    assert message in result.output
    assert camera_ids(cli) == []


@pytest.mark.parametrize("camera_id, message", [
    ("3401234500132000000", "20 digits"),       # 19 digits
    ("34012345001110000001", "131 or 132"),     # type 111 is not a camera
    ("Cam_1", "slug"),
])
def test_malformed_ids_are_refused(cli, camera_id, message) -> None:  # type: ignore[no-untyped-def]
    result = cli("camera", "add", camera_id, "--name", "x", "--region", "t1", "--url", "rtsp://h/x", ok=False)
    assert message in result.output


def test_duplicate_id_is_refused(cli) -> None:  # type: ignore[no-untyped-def]
    cli("camera", "add", "cam-1", "--name", "a", "--region", "t1", "--url", "rtsp://h/a")
    result = cli("camera", "add", "cam-1", "--name", "b", "--region", "t1", "--url", "rtsp://h/b", ok=False)
    assert "already registered" in result.output


def test_import_csv_is_all_or_nothing_with_an_error_per_row(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "fleet.csv"
    bad.write_text(
        "id,name,region,main_url,sub_url,enabled\n"
        "cam-1,One,t1,rtsp://h/1,,true\n"
        "cam-2,Two,t1,ftp://h/2,,true\n"
        "BAD ID,Three,t1,rtsp://h/3,,true\n"
        "cam-1,Dup,t1,rtsp://h/4,,true\n"
    )
    result = cli("camera", "import", str(bad), ok=False)
    assert "row 2" in result.output and "ftp" in result.output
    assert "row 3" in result.output and "row 4" in result.output and "duplicate" in result.output
    assert camera_ids(cli) == []
    good = tmp_path / "fleet.yaml"
    good.write_text(
        "cameras:\n"
        "  - {id: cam-1, name: One, region: t1, main_url: 'rtsp://u:p@h/1'}\n"
        f"  - {{id: '{GB_CAMERA}', name: Two, region: c1, main_url: 'rtsp://h/2', sub_url: 'rtsp://h/2s', rtsp_transport: udp}}\n"
    )
    cli("camera", "import", str(good))
    assert sorted(camera_ids(cli)) == sorted(["cam-1", GB_CAMERA])


def test_import_with_unknown_region_writes_nothing(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "fleet.csv"
    f.write_text("id,name,region,main_url\ncam-1,One,t1,rtsp://h/1\ncam-2,Two,elsewhere,rtsp://h/2\n")
    result = cli("camera", "import", str(f), ok=False)
    assert "elsewhere" in result.output
    assert camera_ids(cli) == []


def test_probe_reports_what_the_camera_sends(cli, camera_server) -> None:  # type: ignore[no-untyped-def]
    srv = camera_server({"/p": Mount("h264", size=(640, 360), label="p")})
    result = cli("camera", "probe", srv.url("/p"), "--json")
    info = json.loads(result.output)
    assert info["ok"] and info["codec"] == "h264" and (info["width"], info["height"]) == (640, 360)
    assert 20 <= info["fps"] <= 30 and info["bitrate_kbps"] > 0 and info["elapsed_s"] < 10


def test_probe_says_why_it_could_not_connect(cli) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cli("camera", "probe", f"rtsp://user:pw@127.0.0.1:{port}/x", ok=False)
    assert "connection refused" in result.output and "pw@" not in result.output


def test_retention_below_thirty_days_needs_the_override(cli) -> None:  # type: ignore[no-untyped-def]
    cli("camera", "add", "cam-r", "--name", "r", "--region", "t1", "--url", "rtsp://h/r")
    result = cli("camera", "edit", "cam-r", "--retention-days", "7", ok=False)
    assert "30" in result.output
    cli("camera", "edit", "cam-r", "--retention-days", "7", "--retention-override")
    cam = json.loads(cli("camera", "list", "--json").output)[0]
    assert cam["retention_days"] == 7 and cam["retention_override"] is True


def test_cli_changes_are_audited_as_the_os_user(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Audit the write, not the caller: a CLI camera add, edit and remove write one row each."""
    import getpass

    from storage.db.engine import open_engine
    from streams.access.audit import AuditLog

    cli("camera", "add", "cam-a", "--name", "A", "--region", "t1", "--url", "rtsp://10.0.0.1/main", "--disabled")
    cli("camera", "edit", "cam-a", "--name", "A2")
    cli("camera", "remove", "cam-a")
    log = AuditLog(open_engine(f"sqlite:///{tmp_path / 'data' / 'index.db'}"))
    rows = [(r.user, r.action, r.camera_id, r.client_ip) for r in log.query(newest_first=False)]
    who = f"cli:{getpass.getuser()}"
    assert rows[-3:] == [(who, "camera_add", "cam-a", "local"), (who, "camera_edit", "cam-a", "local"),
                         (who, "camera_remove", "cam-a", "local")]
    assert [r[1] for r in rows[:2]] == ["region_add", "region_add"]  # the fixture's regions, audited too
