"""Export jobs through HTTP: start, progress, download, verify with the published key; scope and ownership."""

from __future__ import annotations

from pathlib import Path

from storage.evidence.manifest import verify_clip
from storage.evidence.signing import load_public_key
from config.times import iso_utc
from tests.auth.conftest import PASSWORD
from tests.exports.conftest import CAMERA, T0, Site


def _body(**kw):  # type: ignore[no-untyped-def]
    return {
        "camera": CAMERA, "start": iso_utc(T0 + 1_000_000), "end": iso_utc(T0 + 6_000_000), "reason": "case 2026-17"
    } | kw


def test_export_job_over_http_verifies(local_site: Site, tmp_path: Path) -> None:
    c, inv = local_site.client, local_site.headers("investigator")
    r = c.post("/api/exports", json=_body(), headers=inv)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert r.json()["status"] in ("queued", "running", "done")
    local_site.ctx.exports.wait(job_id, timeout=60)
    job = c.get(f"/api/exports/{job_id}", headers=inv).json()
    assert job["status"] == "done", job
    assert job["progress"] == 1.0 and job["bytes"] > 0 and job["error"] == ""
    clip = c.get(job["links"]["clip"], headers=inv)
    manifest = c.get(job["links"]["manifest"], headers=inv)
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
    assert int(clip.headers["content-length"]) == job["bytes"] == len(clip.content)
    assert "cam-a_20270115T080001000Z_20270115T080006000Z.mp4" in clip.headers["content-disposition"]
    (tmp_path / "clip.mp4").write_bytes(clip.content)
    # The same builder as GET clip.mp4 (frame-exact, tested in tests/archive): the very same bytes.
    body = _body()
    live = c.get(f"/api/cameras/{CAMERA}/clip.mp4", params={"start": body["start"], "end": body["end"]}, headers=inv)
    assert live.status_code == 200 and live.content == clip.content
    (tmp_path / "clip.manifest.json").write_bytes(manifest.content)

    key = c.get("/api/keys/export")  # public: no credentials
    assert key.status_code == 200 and key.json()["algorithm"] == "Ed25519"
    public_key = load_public_key(key.json()["public_key_pem"])
    report = verify_clip(tmp_path / "clip.mp4", tmp_path / "clip.manifest.json", public_key)
    assert report.ok, report.problems
    assert report.manifest["signing_key_id"] == key.json()["key_id"]
    assert report.manifest["exported_by"] == "investigator"

    actions = [(e.action, e.detail.split(" ")[1]) for e in local_site.audit.query(action="export", newest_first=False)]
    assert actions == [("export", "stream=main"), ("export", "download=clip"), ("export", "download=manifest")]
    assert [e.action for e in local_site.audit.query(newest_first=False)][-1] == "playback"


def test_exports_are_scoped_and_owned(local_site: Site) -> None:
    c = local_site.client
    local_site.users.add("inv2", PASSWORD, "investigator", ["t1"])
    inv, inv2, admin = (local_site.headers(n) for n in ("investigator", "inv2", "admin"))
    out = c.post("/api/exports", json=_body(camera="cam-out"), headers=inv)
    unknown = c.post("/api/exports", json=_body(camera="cam-zzz"), headers=inv)
    assert out.status_code == unknown.status_code == 404
    assert out.json()["detail"].replace("cam-out", "X") == unknown.json()["detail"].replace("cam-zzz", "X")
    assert c.post("/api/exports", json=_body(), headers=local_site.headers("viewer")).status_code == 403

    job_id = c.post("/api/exports", json=_body(), headers=inv).json()["id"]
    local_site.ctx.exports.wait(job_id, timeout=60)
    assert [j["id"] for j in c.get("/api/exports", headers=inv).json()] == [job_id]
    assert c.get("/api/exports", headers=inv2).json() == []
    assert c.get(f"/api/exports/{job_id}", headers=inv2).status_code == 404
    assert c.get(f"/api/exports/{job_id}/clip.mp4", headers=inv2).status_code == 404
    assert [j["id"] for j in c.get("/api/exports", headers=admin).json()] == [job_id]
    assert c.get(f"/api/exports/{job_id}/manifest.json", headers=admin).status_code == 200


def test_bad_export_requests(local_site: Site) -> None:
    c, inv = local_site.client, local_site.headers("investigator")
    r = c.post("/api/exports", json=_body(start="2027-01-15T08:00:01"), headers=inv)
    assert r.status_code == 422 and "no time zone" in r.text
    r = c.post("/api/exports", json=_body(end=iso_utc(T0)), headers=inv)
    assert r.status_code == 422 and "must be before" in r.text
    r = c.post("/api/exports", json=_body(end=iso_utc(T0 + 8 * 24 * 3600 * 1_000_000)), headers=inv)
    assert r.status_code == 422 and "longer than the export maximum of 168 h" in r.text
    r = c.post("/api/exports", json=_body(start=iso_utc(T0 - 60_000_000), end=iso_utc(T0 - 30_000_000)), headers=inv)
    assert r.status_code == 404 and r.json()["detail"]["gaps"][0]["reason"] == "unknown"
    # Epoch milliseconds work too, and a job that fails says why.
    local_site.store.delete(local_site.segments[0].object_key)
    r = c.post("/api/exports", json=_body(start=T0 // 1000, end=(T0 + 3_000_000) // 1000), headers=inv)
    assert r.status_code == 202, r.text
    job = local_site.ctx.exports.wait(r.json()["id"], timeout=60)
    view = c.get(f"/api/exports/{job.id}", headers=inv).json()
    assert view["status"] == "failed" and local_site.segments[0].object_key in view["error"]
    assert "clip" not in view["links"]
    assert c.get(f"/api/exports/{job.id}/clip.mp4", headers=inv).status_code == 409
