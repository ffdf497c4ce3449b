"""Export jobs against real recorded segments: verified sources, signed manifests, tamper detection."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage.archive.clips import NoRecordings
from storage.evidence.exports import ExportError, ExportService, SegmentUnusable
from storage.evidence.manifest import (
    CLIP_ALTERED,
    MALFORMED_MANIFEST,
    MANIFEST_ALTERED,
    WRONG_KEY,
    canonical_bytes,
    chain_check,
    SourceSegment,
    verify_clip,
)
from storage.evidence.signing import key_id, load_signing_key
from tests.exports.conftest import CAMERA, T0, Site


def service(site: Site, **kw) -> ExportService:  # type: ignore[no-untyped-def]
    return ExportService(site.engine, site.index, site.registry, site.store, site.settings.data_dir, **kw)


def export(site: Site, out: Path, start: int = T0 + 500_000, end: int = T0 + 7_000_000, **kw) -> tuple[dict, Path]:  # type: ignore[no-untyped-def]
    svc = service(site)
    job = svc.create(CAMERA, start, end, "case 2026-17", "zhang", **kw)
    done = svc.run(job.id, out / "clip.mp4")
    assert done.status == "done" and done.progress == 1.0
    manifest = json.loads((out / "clip.manifest.json").read_text())
    return manifest, out / "clip.mp4"


def public_key(site: Site):  # type: ignore[no-untyped-def]
    return load_signing_key(site.settings.data_dir).public_key()


def test_export_round_trip_local(local_site: Site, tmp_path: Path) -> None:
    manifest, clip = export(local_site, tmp_path)
    report = verify_clip(clip, tmp_path / "clip.manifest.json", public_key(local_site))
    assert report.ok, report.problems
    assert manifest["camera"] == {"id": CAMERA, "name": "Gate A"}
    assert manifest["requested"]["start_us"] == T0 + 500_000
    assert manifest["requested"]["start"] == "2027-01-15T08:00:00.500Z"
    assert manifest["covered"] == manifest["requested"]
    assert [s["status"] for s in manifest["segments"]] == ["used"] * 4
    assert [s["sha256"] for s in manifest["segments"]] == [s.sha256 for s in local_site.segments]
    assert manifest["chain"] == {"ok": True, "pairs_checked": 3, "linked": 3,
                                 "linked_around_inserted": 0, "unlinked_across_gaps": 0, "breaks": []}
    assert manifest["gaps"] == [] and manifest["exported_by"] == "zhang" and manifest["reason"] == "case 2026-17"
    assert manifest["signing_key_id"] == key_id(public_key(local_site))
    key_file = local_site.settings.data_dir / "export_signing_key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    # The clip decodes, and the job stored it and the manifest in the object store.
    with av.open(str(clip)) as c:
        assert len(list(c.decode(video=0))) > 100
    stored = {o.key for o in local_site.store.list("exports/")}
    assert len(stored) == 2 and all(k.startswith("exports/") for k in stored)


def test_export_round_trip_s3(s3_site: Site, tmp_path: Path) -> None:
    manifest, clip = export(s3_site, tmp_path)
    assert verify_clip(clip, tmp_path / "clip.manifest.json", public_key(s3_site)).ok
    job_keys = [o.key for o in s3_site.store.list("exports/")]
    assert any(k.endswith(".mp4") for k in job_keys) and any(k.endswith(".manifest.json") for k in job_keys)
    stored_clip = next(k for k in job_keys if k.endswith(".mp4"))
    assert s3_site.store.stat(stored_clip).sha256 == manifest["clip"]["sha256"]


def test_tampered_clip_and_manifest_are_named(local_site: Site, tmp_path: Path) -> None:
    _, clip = export(local_site, tmp_path)
    mpath = tmp_path / "clip.manifest.json"
    key = public_key(local_site)
    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad_clip = tmp_path / "bad.mp4"
    bad_clip.write_bytes(bytes(data))
    report = verify_clip(bad_clip, mpath, key)
    assert report.codes() == [CLIP_ALTERED] and "the clip was altered" in report.problems[0].message

    manifest = json.loads(mpath.read_text())
    manifest["reason"] = "a different case"
    bad_manifest = tmp_path / "bad.manifest.json"
    bad_manifest.write_text(json.dumps(manifest))
    report = verify_clip(clip, bad_manifest, key)
    assert report.codes() == [MANIFEST_ALTERED] and "the manifest was altered" in report.problems[0].message
    # Both at once: both named.
    assert verify_clip(bad_clip, bad_manifest, key).codes() == [CLIP_ALTERED, MANIFEST_ALTERED]

    other = Ed25519PrivateKey.generate().public_key()
    report = verify_clip(clip, mpath, other)
    assert report.codes() == [WRONG_KEY] and key_id(other) in report.problems[0].message

    (tmp_path / "junk.json").write_text("{not json")
    assert verify_clip(clip, tmp_path / "junk.json", key).codes() == [MALFORMED_MANIFEST]


def test_signature_covers_canonical_json_only(local_site: Site, tmp_path: Path) -> None:
    """Re-indenting a manifest (another JSON writer) keeps it valid: the signature is over canonical bytes."""
    _, clip = export(local_site, tmp_path)
    mpath = tmp_path / "clip.manifest.json"
    manifest = json.loads(mpath.read_text())
    mpath.write_text(json.dumps(manifest, indent=7))
    assert verify_clip(clip, mpath, public_key(local_site)).ok
    body = canonical_bytes(manifest)
    assert b'", "' not in body and b'": ' not in body and b"\n" not in body, "no whitespace between tokens"
    assert b'"signature"' not in body and body.index(b'"allow_gaps"') < body.index(b'"camera"'), "keys sorted"


def _missing(site: Site) -> None:
    site.store.delete(site.segments[1].object_key)


def _corrupt(site: Site) -> None:
    """Change one byte of the stored object (the size and recorded metadata stay)."""
    path = site.store.root / site.segments[2].object_key
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, index, status, reason", [
    (_missing, 1, "missing", "storage_missing"),
    (_corrupt, 2, "corrupt", "storage_corrupt"),
])
def test_damaged_segment_fails_or_is_skipped_with_allow_gaps(  # type: ignore[no-untyped-def]
    local_site: Site, tmp_path: Path, damage, index, status, reason
) -> None:
    damage(local_site)
    seg = local_site.segments[index]
    svc = service(local_site)
    job = svc.create(CAMERA, T0, T0 + 8_000_000, "case", "zhang")
    with pytest.raises(SegmentUnusable, match=seg.object_key):
        svc.run(job.id, tmp_path / "clip.mp4")
    failed = svc.get(job.id)
    assert failed.status == "failed" and seg.object_key in failed.error and "allow_gaps" in failed.error
    assert not (tmp_path / "clip.mp4").exists(), "no partial clip is left behind"

    job = svc.create(CAMERA, T0, T0 + 8_000_000, "case", "zhang", allow_gaps=True)
    done = svc.run(job.id, tmp_path / "clip.mp4")
    assert done.status == "done"
    manifest = json.loads((tmp_path / "clip.manifest.json").read_text())
    assert [s["status"] for s in manifest["segments"]] == ["used"] * index + [status] + ["used"] * (3 - index)
    assert manifest["skipped_segments"] == 1 and manifest["allow_gaps"] is True
    assert [(g["start_us"], g["end_us"], g["reason"]) for g in manifest["gaps"]] == [(seg.start_us, seg.end_us, reason)]
    assert verify_clip(tmp_path / "clip.mp4", tmp_path / "clip.manifest.json", public_key(local_site)).ok
    # The clip holds the other segments' video only: 6 s of 25 fps.
    with av.open(str(tmp_path / "clip.mp4")) as c:
        assert len(list(c.decode(video=0))) == 150


def test_bad_requests(local_site: Site) -> None:
    svc = service(local_site, max_seconds=3600)
    with pytest.raises(ExportError, match="must be before"):
        svc.create(CAMERA, T0, T0, "r", "zhang")
    with pytest.raises(ExportError, match="longer than the export maximum of 1 h"):
        svc.create(CAMERA, T0, T0 + 3601 * 1_000_000, "r", "zhang")
    with pytest.raises(ExportError, match="not registered"):
        svc.create("cam-zzz", T0, T0 + 1, "r", "zhang")
    with pytest.raises(NoRecordings, match="no main recordings") as info:
        svc.create(CAMERA, T0 - 10_000_000, T0 - 5_000_000, "r", "zhang")
    assert [g.reason for g in info.value.gaps] == ["unknown"]


def test_chain_check_reports_breaks() -> None:
    a = SourceSegment("k/a", "aa", None, 0, 10, 1)
    b = SourceSegment("k/b", "bb", "aa", 10, 20, 1)
    c = SourceSegment("k/c", "cc", "XX", 20, 30, 1)  # contiguous, wrong link: a break
    d = SourceSegment("k/d", "dd", None, 40, 50, 1)  # after a gap, a new chain: not a break
    result = chain_check([a, b, c, d])
    assert result["ok"] is False and result["linked"] == 1 and result["unlinked_across_gaps"] == 1
    assert result["breaks"] == [
        {"key": "k/c", "prev_key": "k/b", "expected_prev_sha256": "bb", "found_prev_sha256": "XX"}
    ]


def test_chain_check_accepts_inserted_links_only_from_the_same_predecessor() -> None:
    a = SourceSegment("k/a", "aa", None, 0, 10, 1)
    late = SourceSegment("k/l", "ll", "aa", 10, 20, 1)  # indexed after c: linked to a, as c is
    c = SourceSegment("k/c", "cc", "aa", 20, 30, 1)
    assert chain_check([a, late, c]) | {"breaks": []} == {"ok": True, "pairs_checked": 2, "linked": 1,
                                                          "linked_around_inserted": 1, "unlinked_across_gaps": 0,
                                                          "breaks": []}
    forged = SourceSegment("k/f", "ff", "zz", 10, 20, 1)  # does not chain from a: c's skip is a break
    assert chain_check([a, forged, c])["ok"] is False


def test_progress_rises_to_one_and_is_kept_in_the_row(local_site: Site, tmp_path: Path) -> None:
    svc = service(local_site)
    job = svc.create(CAMERA, T0, T0 + 8_000_000, "case", "zhang")
    seen: list[float] = []
    svc.run(job.id, tmp_path / "clip.mp4", on_progress=seen.append)
    assert len(seen) > 3 and seen == sorted(seen) and seen[-1] == 1.0 and seen[-2] < 1.0
    assert svc.get(job.id).progress == 1.0


def test_gaps_and_chain_breaks_are_in_the_manifest(local_site: Site, tmp_path: Path) -> None:
    """A second camera recorded in two runs with an offline gap between them, then one index
    row's chain link altered: the manifest lists the gap and names the break."""
    from sqlalchemy import update

    from config.cameras import Camera
    from storage.db.schema import SegmentRow
    from tests.exports.conftest import record

    site = local_site
    site.registry.add_camera(Camera(id="cam-b", name="Gate B", region="t1", main_url="rtsp://10.0.0.7/main"))
    record(site.store, site.index, tmp_path / "spool-b1", camera_id="cam-b", seconds=4.0, start_us=T0)
    record(site.store, site.index, tmp_path / "spool-b2", camera_id="cam-b", seconds=4.0, start_us=T0 + 8_000_000)
    site.index.add_gap("cam-b", "main", T0 + 4_000_000, T0 + 8_000_000, "offline", "camera unreachable")
    svc = service(site)
    job = svc.create("cam-b", T0, T0 + 12_000_000, "case", "zhang")
    svc.run(job.id, tmp_path / "b.mp4")
    manifest = json.loads((tmp_path / "b.manifest.json").read_text())
    assert [(g["reason"], g["start_us"] - T0, g["end_us"] - T0) for g in manifest["gaps"]] == [
        ("offline", 4_000_000, 8_000_000)
    ]
    # The uploader links the first segment after the gap to the last before it.
    assert manifest["chain"] == {"ok": True, "pairs_checked": 3, "linked": 3,
                                 "linked_around_inserted": 0, "unlinked_across_gaps": 0, "breaks": []}

    rows = site.index.segments("cam-b", "main")
    with site.index.session() as s, s.begin():
        s.execute(update(SegmentRow).where(SegmentRow.id == rows[1].id).values(prev_sha256="0" * 64))
    job = svc.create("cam-b", T0, T0 + 12_000_000, "case", "zhang")
    svc.run(job.id, tmp_path / "b2.mp4")
    chain = json.loads((tmp_path / "b2.manifest.json").read_text())["chain"]
    assert not chain["ok"]
    assert chain["breaks"] == [{"key": rows[1].object_key, "prev_key": rows[0].object_key,
                                "expected_prev_sha256": rows[0].sha256, "found_prev_sha256": "0" * 64}]
