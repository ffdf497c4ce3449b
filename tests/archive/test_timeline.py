"""GET /api/cameras/{id}/recordings and ``sharpeyes recordings``: runs, gaps with reasons, unknown holes."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from config.times import TimeError, parse_time
from sharpeyes.cli.archive import recordings
from sharpeyes.services import Services
from storage.archive.timeline import runs_of, timeline
from tests.archive.conftest import Archive
from tests.archive.recorded import T0

import pytest


def url(start: str, end: str, cam: str = "cam-1", extra: str = "") -> str:
    return f"/api/cameras/{cam}/recordings?start={start}&end={end}{extra}"


def test_runs_merge_contiguous_segments_and_gaps_carry_reasons(archive: Archive) -> None:
    r = archive.get(url("2025-06-15T15:59:50%2B08:00", str(T0 // 1000 + 30_000)))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["start"] == "2025-06-15T07:59:50.000Z" and body["end_ms"] == T0 // 1000 + 30_000
    assert body["display_timezone"] == "Asia/Shanghai" and body["display_offset"] == "+08:00"
    assert [(x["start"], x["end"], x["segments"]) for x in body["runs"]] == [
        ("2025-06-15T08:00:00.000Z", "2025-06-15T08:00:12.000Z", 3),
        ("2025-06-15T08:00:16.000Z", "2025-06-15T08:00:24.000Z", 2),
    ]
    assert [(g["start"], g["end"], g["reason"]) for g in body["gaps"]] == [
        ("2025-06-15T07:59:50.000Z", "2025-06-15T08:00:00.000Z", "unknown"),
        ("2025-06-15T08:00:12.000Z", "2025-06-15T08:00:16.000Z", "offline"),
        ("2025-06-15T08:00:24.000Z", "2025-06-15T08:00:30.000Z", "unknown"),
    ]
    assert body["gaps"][1]["detail"] == "no answer on 10.0.0.5:554"


def test_range_inside_a_run_is_one_clipped_run(archive: Archive) -> None:
    body = archive.get(url(str(T0 // 1000 + 1_500), str(T0 // 1000 + 9_000))).json()
    assert [(x["start_ms"], x["end_ms"]) for x in body["runs"]] == [(T0 // 1000 + 1_500, T0 // 1000 + 9_000)]
    assert body["gaps"] == []


def test_sub_stream_and_idle_camera_have_only_gaps(archive: Archive) -> None:
    body = archive.get(url(str(T0 // 1000), str(T0 // 1000 + 10_000), extra="&stream=sub")).json()
    assert body["runs"] == [] and [g["reason"] for g in body["gaps"]] == ["unknown"]
    body = archive.get(url(str(T0 // 1000), str(T0 // 1000 + 10_000), cam="cam-2")).json()
    assert body["runs"] == [] and body["gaps"][0]["duration_ms"] == 10_000


def test_open_gap_runs_to_now(archive: Archive) -> None:
    gid = archive.index.open_gap("cam-2", "main", T0 + 1_000_000, "unauthorized", "401 from camera")
    try:
        tl = timeline(archive.index, "cam-2", "main", T0, T0 + 60_000_000, now=T0 + 30_000_000)
        assert [(g.start_us - T0, g.end_us - T0, g.reason) for g in tl.gaps] == [
            (0, 1_000_000, "unknown"), (1_000_000, 30_000_000, "unauthorized")]
        assert "still open" in tl.gaps[1].detail
    finally:
        archive.index.close_gap(gid, T0 + 2_000_000)


def test_segments_within_one_frame_are_one_run(archive: Archive) -> None:
    rows = archive.index.segments("cam-1", "main")

    class Row:  # a row shifted by 30 ms: within one frame of the previous end
        def __init__(self, start_us: int, end_us: int) -> None:
            self.start_us, self.end_us, self.bytes = start_us, end_us, 1
    shifted = [
        rows[0],
        Row(rows[0].end_us + 30_000, rows[0].end_us + 4_000_000),
        Row(rows[0].end_us + 4_100_000, rows[0].end_us + 5_000_000),
    ]
    assert [(r.start_us - T0, r.end_us - T0, r.segments) for r in runs_of(shifted)] == [
        (0, 8_000_000, 2), (8_100_000, 9_000_000, 1)]


@pytest.mark.parametrize("bad", ["2025-06-15T08:00:00", "yesterday", "2025-06-15", ""])
def test_a_time_without_a_zone_is_refused_with_what_to_send(archive: Archive, bad: str) -> None:
    r = archive.get(url(bad, str(T0 // 1000)))
    assert r.status_code == 422
    assert "ISO 8601 with an offset" in r.json()["detail"] and "epoch milliseconds" in r.json()["detail"]


def test_parse_time_forms() -> None:
    assert parse_time("2025-06-15T16:00:00+08:00") == T0
    assert parse_time("2025-06-15T16:00:00 08:00") == T0, "an unencoded + in a query string"
    assert parse_time("2025-06-15T03:00:00-05:00") == T0
    assert parse_time("2025-06-15T08:00:00Z") == T0
    assert parse_time("2025-06-15T08:00:00.25Z") == T0 + 250_000
    assert parse_time(str(T0 // 1000)) == T0
    with pytest.raises(TimeError, match="no time zone"):
        parse_time("2025-06-15T08:00:00")


def test_start_after_end_unknown_camera_scope_and_role(archive: Archive) -> None:
    assert archive.get(url(str(T0 // 1000 + 5), str(T0 // 1000))).status_code == 422
    unknown = archive.get(url(str(T0 // 1000), str(T0 // 1000 + 5), cam="nope"))
    assert unknown.status_code == 404
    out_of_scope = archive.get(url(str(T0 // 1000), str(T0 // 1000 + 5)), name="far")
    assert out_of_scope.status_code == 404 and out_of_scope.json() == {
        "detail": unknown.json()["detail"].replace("nope", "cam-1")
    }
    assert archive.get(url(str(T0 // 1000), str(T0 // 1000 + 5)), name="view").status_code == 403
    assert archive.client.get(url(str(T0 // 1000), str(T0 // 1000 + 5))).status_code == 401


def test_the_timeline_is_not_audited(archive: Archive) -> None:
    before = len(archive.audit.query(limit=100_000))
    archive.get(url(str(T0 // 1000), str(T0 // 1000 + 5_000)))
    assert len(archive.audit.query(limit=100_000)) == before


def test_cli_prints_the_same_timeline(archive: Archive) -> None:
    services = Services(archive.settings)
    root = typer.Typer()

    @root.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = services

    root.command("recordings")(recordings)
    run = CliRunner().invoke
    r = run(root, ["recordings", "cam-1", "--from", "2025-06-15T15:59:50+08:00", "--to", str(T0 // 1000 + 30_000)],
            env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    for text in ("2025-06-15T08:00:00.000Z", "2025-06-15T16:00:16.000+08:00", "offline", "no answer on 10.0.0.5:554",
                 "unknown", "recorded 0:00:20.000 in 2 run(s); 3 gap(s)"):
        assert text in r.output
    # The CLI reads a time without an offset in display_timezone (its --help says so).
    naive = run(root, ["recordings", "cam-1", "--from", "2025-06-15T15:59:50", "--to", str(T0 // 1000 + 30_000)],
                env={"COLUMNS": "200"})
    assert naive.exit_code == 0 and naive.output == r.output
    r = run(root, ["recordings", "cam-1", "--from", "yesterday", "--to", "1"])
    assert r.exit_code == 2 and "is not a time" in r.output
    r = run(root, ["recordings", "nope", "--from", "0", "--to", "1"])
    assert r.exit_code == 1 and "not registered" in r.output
