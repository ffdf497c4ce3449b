"""Legal holds: the store, the routes, the audit rows, and S3 object lock where the bucket has it."""

from __future__ import annotations

from storage.archive.holds import HoldError, HoldStore
from config.times import iso_utc
from tests.exports.conftest import CAMERA, T0, Site, minio_client

import pytest


def test_place_list_release_and_held_segments(local_site: Site) -> None:
    holds = HoldStore(local_site.engine)
    segs = local_site.segments
    assert len(segs) == 4
    # Hold the middle of the second segment only: that one segment is held, on main; sub is not recorded.
    h = holds.place(
        CAMERA, segs[1].start_us + 100_000, segs[1].start_us + 200_000, "case 2026-17", "zhang", stream="main"
    )
    assert holds.is_held(CAMERA, "main", segs[1].start_us, segs[1].end_us)
    assert not holds.is_held(CAMERA, "main", segs[0].start_us, segs[0].end_us)
    assert not holds.is_held(CAMERA, "sub", segs[1].start_us, segs[1].end_us)
    assert not holds.is_held("cam-out", "main", segs[1].start_us, segs[1].end_us)
    assert holds.held_segment_ids() == {segs[1].id}
    assert holds.held_segment_ids(ending_before_us=segs[0].end_us) == set()
    both = holds.place(CAMERA, segs[2].start_us, segs[3].end_us, "case 2026-18", "li")  # both streams
    assert holds.is_held(CAMERA, "sub", segs[3].start_us, segs[3].end_us)
    assert holds.held_segment_ids(camera_id=CAMERA, stream="main") == {segs[1].id, segs[2].id, segs[3].id}
    assert [x.id for x in holds.list(CAMERA)] == [both.id, h.id]

    released = holds.release(h.id, "wang")
    assert released.released_by == "wang" and not released.active
    assert holds.release(h.id, "someone else").released_by == "wang", "a second release changes nothing"
    assert holds.held_segment_ids() == {segs[2].id, segs[3].id}
    assert [x.id for x in holds.list(CAMERA)] == [both.id]
    assert {x.id for x in holds.list(CAMERA, active_only=False)} == {both.id, h.id}


@pytest.mark.parametrize("args, message", [
    ((T0, T0, "r"), "must be before"),
    ((T0, T0 + 1, "  "), "give a reason"),
])
def test_bad_holds_are_refused(local_site: Site, args, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(HoldError, match=message):
        HoldStore(local_site.engine).place(CAMERA, *args, created_by="zhang")


def test_hold_routes_are_scoped_and_audited(local_site: Site) -> None:
    c, inv = local_site.client, local_site.headers("investigator")
    body = {"start": iso_utc(T0), "end": iso_utc(T0 + 3_000_000), "reason": "case 2026-17"}
    r = c.post(f"/api/cameras/{CAMERA}/holds", json=body, headers=inv)
    assert r.status_code == 201, r.text
    hold = r.json()
    assert hold["active"] and hold["created_by"] == "investigator" and hold["object_legal_holds"] == 0
    assert c.post(f"/api/cameras/{CAMERA}/holds", json=body, headers=local_site.headers("viewer")).status_code == 403
    assert c.post("/api/cameras/cam-out/holds", json=body, headers=inv).json() == (
        c.post("/api/cameras/cam-zzz/holds", json=body, headers=inv).json()
        | {"detail": "camera cam-out is not registered"}
    )
    r = c.post(f"/api/cameras/{CAMERA}/holds", json=body | {"start": "2026-11-27T08:00:00"}, headers=inv)
    assert r.status_code == 422 and "no time zone" in r.text
    r = c.post(f"/api/cameras/{CAMERA}/holds", json=body | {"end": body["start"]}, headers=inv)
    assert r.status_code == 422 and "before its end" in r.text
    assert [h["id"] for h in c.get(f"/api/cameras/{CAMERA}/holds", headers=inv).json()] == [hold["id"]]

    r = c.delete(f"/api/cameras/{CAMERA}/holds/{hold['id']}", headers=local_site.headers("admin"))
    assert r.status_code == 200 and r.json()["released_by"] == "admin"
    assert c.get(f"/api/cameras/{CAMERA}/holds", headers=inv).json() == []
    assert len(c.get(f"/api/cameras/{CAMERA}/holds?released=true", headers=inv).json()) == 1
    r = c.delete(f"/api/cameras/{CAMERA}/holds/999", headers=inv)
    assert r.status_code == 404 and "has no hold 999" in r.text

    rows = [e for e in local_site.audit.query(newest_first=False) if e.action in ("hold", "hold_release")]
    assert [(e.action, e.user, e.camera_id, e.outcome) for e in rows] == [
        ("hold", "investigator", CAMERA, "ok"),
        ("hold_release", "admin", CAMERA, "ok"),
    ]
    assert rows[0].range_start_us == T0 and rows[0].range_end_us == T0 + 3_000_000
    assert "case 2026-17" in rows[0].detail
    assert local_site.audit.verify().ok


def test_object_lock_bucket_gets_legal_holds(locked_s3_site: Site, s3_server) -> None:  # type: ignore[no-untyped-def]
    site, segs = locked_s3_site, locked_s3_site.segments
    client = minio_client(s3_server)
    bucket = site.store.bucket
    assert site.store.supports_legal_hold()
    body = {"start": iso_utc(segs[0].start_us), "end": iso_utc(segs[1].end_us - 1), "reason": "case 9"}
    first = site.client.post(f"/api/cameras/{CAMERA}/holds", json=body, headers=site.headers("investigator")).json()
    assert first["object_legal_holds"] == 2
    held = [client.is_object_legal_hold_enabled(bucket, s.object_key) for s in segs]
    assert held == [True, True, False, False]
    # A second, overlapping hold; releasing the first keeps the overlap locked.
    body2 = {"start": iso_utc(segs[1].start_us), "end": iso_utc(segs[2].end_us), "reason": "case 10"}
    second = site.client.post(f"/api/cameras/{CAMERA}/holds", json=body2, headers=site.headers("investigator")).json()
    site.client.delete(f"/api/cameras/{CAMERA}/holds/{first['id']}", headers=site.headers("investigator"))
    assert [client.is_object_legal_hold_enabled(bucket, s.object_key) for s in segs] == [False, True, True, False]
    site.client.delete(f"/api/cameras/{CAMERA}/holds/{second['id']}", headers=site.headers("investigator"))
    assert not any(client.is_object_legal_hold_enabled(bucket, s.object_key) for s in segs)


def test_plain_bucket_and_local_store_have_no_legal_hold(s3_site: Site) -> None:
    assert not s3_site.store.supports_legal_hold()
    assert s3_site.store.set_legal_hold(s3_site.segments[0].object_key, True) is False
