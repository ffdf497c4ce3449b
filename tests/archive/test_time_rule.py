"""The one time rule on every route family: a bare number is epoch milliseconds, and a time
without a zone is refused (422 saying what to send)."""

from __future__ import annotations

from typing import Iterator

import pytest

from config.times import iso_utc, now_us
from tests.archive.conftest import PASSWORD, Archive, build_archive
from tests.archive.recorded import T0

MS = T0 // 1000
DAY_MS = 86_400_000
NAIVE = "2025-06-15T08:00:00"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    a = build_archive(tmp_path_factory.mktemp("time-rule"))
    a.state.users.add("adm", PASSWORD, "admin", ["*"])
    with a.client:
        yield a
    a.index.engine.dispose()


def test_archive_routes(site: Archive) -> None:
    r = site.get(f"/api/cameras/cam-1/recordings?start={MS}&end={MS + 30_000}")
    assert r.status_code == 200 and r.json()["start"] == iso_utc(T0)
    # clip.mp4 and vod.m3u8 serve at most clip_max_seconds (a day): two days of milliseconds
    # is too long, where two days read as microseconds would be three minutes.
    for route in ("clip.mp4", "vod.m3u8"):
        assert site.get(f"/api/cameras/cam-1/{route}?start={MS}&end={MS + 4_000}").status_code == 200
        r = site.get(f"/api/cameras/cam-1/{route}?start={MS}&end={MS + 2 * DAY_MS}")
        assert r.status_code == 422 and "at most" in r.text
        assert site.get(f"/api/cameras/cam-1/{route}?start={NAIVE}&end={MS}").status_code == 422
    r = site.get(f"/api/cameras/cam-1/snapshot.jpg?at={MS + 1_000}")
    assert r.status_code == 200
    assert r.headers["X-Sharpeyes-Frame-Time"].startswith(iso_utc(T0 + 1_000_000)[:19])
    r = site.get(f"/api/cameras/cam-1/recordings?start={NAIVE}&end={MS}")
    assert r.status_code == 422 and "no time zone" in r.text


def test_media_routes(site: Archive) -> None:
    # At most 31 days: 40 days of milliseconds is refused (as microseconds it would be an hour).
    for path in ("/api/cameras/cam-1/thumbnails", "/api/cameras/cam-1/motion", "/api/motion"):
        extra = "&region=county" if path == "/api/motion" else ""
        assert site.get(f"{path}?start={MS}&end={MS + 60_000}{extra}").status_code == 200, path
        r = site.get(f"{path}?start={MS}&end={MS + 40 * DAY_MS}{extra}")
        assert r.status_code == 422 and "at most" in r.text, path
        r = site.get(f"{path}?start={NAIVE}&end={MS}{extra}")
        assert r.status_code == 422 and "no time zone" in r.text, path


def test_hold_and_export_bodies(site: Archive) -> None:
    body = {"start": MS, "end": MS + 4_000, "reason": "case 7"}
    r = site.client.post("/api/cameras/cam-1/holds", json=body, headers=site.headers())
    assert r.status_code in (200, 201), r.text
    assert r.json()["start"] == iso_utc(T0)
    r = site.client.post("/api/exports", json={**body, "camera": "cam-1"}, headers=site.headers())
    assert r.status_code == 202, r.text
    assert r.json()["start"] == iso_utc(T0)
    r = site.client.post("/api/exports", json={**body, "camera": "cam-1", "start": NAIVE}, headers=site.headers())
    assert r.status_code == 422 and "no time zone" in r.text


def test_audit_query(site: Archive) -> None:
    site.get(f"/api/cameras/cam-1/recordings?start={MS}&end={MS + 1_000}")  # one audited view at least
    now_ms = now_us() // 1000
    recent = site.get(f"/api/audit?since={now_ms - 3_600_000}", name="adm").json()
    assert recent
    # An hour ahead, as milliseconds, holds nothing; read as microseconds it would be 1970.
    assert site.get(f"/api/audit?since={now_ms + 3_600_000}", name="adm").json() == []
    assert site.get(f"/api/audit?until={now_ms - 3_600_000}", name="adm").json() == []


@pytest.mark.parametrize("bad", ["²", "1" * 40, "0001-01-01T00:00:00+08:00", "-5", "12.5", "١٢٣"])
def test_bad_times_are_4xx(site: Archive, bad: str) -> None:
    r = site.get(f"/api/cameras/cam-1/recordings?start={bad}&end={MS}")
    assert r.status_code == 422 and ("epoch milliseconds" in r.text or "1970" in r.text), r.text
