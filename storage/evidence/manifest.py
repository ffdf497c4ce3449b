"""Evidence manifests: what an exported clip is, where it came from, signed with Ed25519.

A manifest is one JSON object (format ``sharpeyes.export.manifest``, version 1):
the clip's file name, sha256 and size; the camera, stream, requested and
covered range; every source segment (object key, sha256, the chain link
``prev_sha256``, times, and whether it was used or skipped as missing/corrupt);
the hash-chain check over those segments; the gaps; who exported it and why;
when; the software version; and the signing key id. Times are integers in µs
since the epoch (UTC, exact) with the same instant beside them as ISO 8601 UTC
text (millisecond precision, ``config.times.iso_utc``).

The signature is Ed25519 over the *canonical JSON* of every field except
``signature``: keys sorted, no whitespace (``separators=(",", ":")``), UTF-8,
no floats anywhere. A third party recomputes those bytes and checks the
signature with the site's public key (``GET /api/keys/export``); see
docs/exports.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from storage.archive.timeline import ClipGap
from storage.evidence.signing import ALGORITHM, key_id
from config.times import iso_utc

FORMAT = "sharpeyes.export.manifest"
FORMAT_VERSION = 1
SEGMENT_STATUSES = ("used", "missing", "corrupt")


def software_version() -> str:
    """``sharpeyes <version>`` as installed (the source tree's version when not installed)."""
    try:
        from importlib.metadata import version

        return f"sharpeyes {version('sharpeyes')}"
    except Exception:  # noqa: BLE001 - running from a checkout
        return "sharpeyes 0.1.0+source"


@dataclass(frozen=True)
class SourceSegment:
    """One indexed segment the export read (or had to skip), as the manifest lists it."""

    object_key: str
    sha256: str
    prev_sha256: str | None
    start_us: int
    end_us: int
    bytes: int
    status: str = "used"  # one of SEGMENT_STATUSES
    detail: str = ""
    # "live", or "device": backfilled from the GB/T 28181 device's own recording (not seen live).
    origin: str = "live"

    @classmethod
    def from_row(cls, row: Any, status: str = "used", detail: str = "") -> "SourceSegment":
        """From a ``storage.db.schema.SegmentRow`` (or anything with the same attributes)."""
        return cls(row.object_key, row.sha256, row.prev_sha256, row.start_us, row.end_us, row.bytes, status, detail,
                   getattr(row, "origin", "live") or "live")

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.object_key,
            "sha256": self.sha256,
            "prev_sha256": self.prev_sha256,
            "start": iso_utc(self.start_us),
            "end": iso_utc(self.end_us),
            "start_us": self.start_us,
            "end_us": self.end_us,
            "bytes": self.bytes,
            "status": self.status,
            "detail": self.detail,
            "origin": self.origin,
        }


def gap_dict(gap: ClipGap) -> dict[str, Any]:
    """A gap as the manifest lists it: µs and ISO times, reason, detail."""
    return {
        "start": iso_utc(gap.start_us),
        "end": iso_utc(gap.end_us),
        "start_us": gap.start_us,
        "end_us": gap.end_us,
        "reason": gap.reason,
        "detail": gap.detail,
    }


def chain_check(segments: Sequence[SourceSegment]) -> dict[str, Any]:
    """Check the uploader's hash chain over consecutive segments, oldest first.

    Each segment's ``prev_sha256`` is the sha256 of the segment recorded before
    it. Where two segments are contiguous (one ends where the next starts) the
    link must hold: a mismatch means a segment between them was replaced,
    removed or re-indexed, and is reported as a break. Across a gap the link may
    legitimately be missing (a new recording run), so it is only counted.

    An *inserted link* is a segment indexed late, between two already linked (a
    recovered or adopted spool segment, see docs/scale.md): the index links it to
    the segment before it in time, and the later segment keeps its link to that
    same earlier one. So a link that skips over segments is valid when those
    segments chain from the very segment it points to; it is counted as
    ``linked_around_inserted``.
    """
    breaks: list[dict[str, Any]] = []
    linked = 0
    around_inserted = 0
    unlinked_across_gaps = 0
    for i in range(1, len(segments)):
        prev, cur = segments[i - 1], segments[i]
        if cur.prev_sha256 == prev.sha256:
            linked += 1
        elif _links_around_inserted(segments, i):
            around_inserted += 1
        elif prev.end_us == cur.start_us:
            breaks.append(
                {
                    "key": cur.object_key,
                    "prev_key": prev.object_key,
                    "expected_prev_sha256": prev.sha256,
                    "found_prev_sha256": cur.prev_sha256,
                }
            )
        else:
            unlinked_across_gaps += 1
    return {
        "ok": not breaks,
        "pairs_checked": max(0, len(segments) - 1),
        "linked": linked,
        "linked_around_inserted": around_inserted,
        "unlinked_across_gaps": unlinked_across_gaps,
        "breaks": breaks,
    }


def _links_around_inserted(segments: Sequence[SourceSegment], i: int) -> bool:
    """Does ``segments[i]`` link to an earlier segment ``j`` whose successor ``j+1``
    (the first inserted one) links to ``j`` as well?"""
    want = segments[i].prev_sha256
    if want is None:
        return False
    for j in range(i - 2, -1, -1):
        if segments[j].sha256 == want:
            return segments[j + 1].prev_sha256 == want
    return False


def build_manifest(
    *,
    export_id: str,
    clip_name: str,
    clip_sha256: str,
    clip_bytes: int,
    camera_id: str,
    camera_name: str,
    stream: str,
    requested: tuple[int, int],
    covered: tuple[int, int] | None,
    segments: Sequence[SourceSegment],
    gaps: Iterable[ClipGap],
    exported_by: str,
    reason: str,
    exported_us: int,
    allow_gaps: bool,
    signing_key_id: str,
    software: str | None = None,
    audit_anchor: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest's fields, unsigned (``sign_manifest`` adds the signature)."""
    for seg in segments:
        if seg.status not in SEGMENT_STATUSES:
            raise ValueError(f"segment {seg.object_key}: status {seg.status!r} is not one of {SEGMENT_STATUSES}")

    def span(r: tuple[int, int] | None) -> dict[str, Any] | None:
        if r is None:
            return None
        return {"start": iso_utc(r[0]), "end": iso_utc(r[1]), "start_us": r[0], "end_us": r[1]}

    out: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "export_id": export_id,
        "clip": {"file": clip_name, "sha256": clip_sha256, "bytes": clip_bytes},
        "camera": {"id": camera_id, "name": camera_name},
        "stream": stream,
        "requested": span(requested),
        "covered": span(covered),
        "segments": [s.as_dict() for s in segments],
        "skipped_segments": sum(1 for s in segments if s.status != "used"),
        "allow_gaps": allow_gaps,
        "chain": chain_check(segments),
        "gaps": [gap_dict(g) for g in gaps],
        "exported_by": exported_by,
        "reason": reason,
        "exported_at": iso_utc(exported_us),
        "exported_at_us": exported_us,
        "software": software or software_version(),
        "signature_algorithm": ALGORITHM,
        "signing_key_id": signing_key_id,
    }
    if audit_anchor is not None:
        # The audit chain's signed head when the clip was made: a copy of the anchor that
        # leaves the site with the evidence (``sharpeyes audit verify --anchor``).
        out["audit_anchor"] = audit_anchor
    return out


def canonical_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes the signature covers: every field but ``signature``, canonical JSON."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sign_manifest(manifest: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of ``manifest`` with ``signing_key_id`` set to ``key``'s and ``signature``
    (base64 of the Ed25519 signature over ``canonical_bytes``)."""
    signed = {k: v for k, v in manifest.items() if k != "signature"}
    signed["signature_algorithm"] = ALGORITHM
    signed["signing_key_id"] = key_id(key.public_key())
    signed["signature"] = base64.b64encode(key.sign(canonical_bytes(signed))).decode("ascii")
    return signed


def manifest_json(manifest: dict[str, Any]) -> bytes:
    """The manifest file's bytes: indented for people to read (the signature does not
    depend on layout, only on ``canonical_bytes``)."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


# -- verification -----------------------------------------------------------------

# What verify_clip can find wrong, one code each.
CLIP_ALTERED = "clip_altered"
MANIFEST_ALTERED = "manifest_altered"
WRONG_KEY = "wrong_key"
MALFORMED_MANIFEST = "malformed_manifest"
CLIP_UNREADABLE = "clip_unreadable"


@dataclass(frozen=True)
class Problem:
    code: str
    message: str


@dataclass
class VerifyReport:
    """What ``verify_clip`` found: ``ok`` only when the clip matches and the signature holds."""

    clip_path: Path
    manifest_path: Path
    problems: list[Problem] = field(default_factory=list)
    clip_sha256: str | None = None
    manifest: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def codes(self) -> list[str]:
        return [p.code for p in self.problems]


def file_sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def check_signature(manifest: dict[str, Any], public_key: Ed25519PublicKey) -> Problem | None:
    """None when ``manifest``'s signature verifies with ``public_key``, else what is wrong."""
    expected_id = key_id(public_key)
    signature = manifest.get("signature")
    if not isinstance(signature, str):
        return Problem(MALFORMED_MANIFEST, "the manifest has no signature")
    if manifest.get("signature_algorithm") != ALGORITHM:
        return Problem(
            MALFORMED_MANIFEST, f"signature algorithm {manifest.get('signature_algorithm')!r} is not {ALGORITHM}"
        )
    try:
        raw = base64.b64decode(signature, validate=True)
        body = canonical_bytes(manifest)
    except (ValueError, TypeError) as exc:
        return Problem(MALFORMED_MANIFEST, f"the signature or a field cannot be read: {exc}")
    try:
        public_key.verify(raw, body)
        valid = True
    except InvalidSignature:
        valid = False
    if valid and manifest.get("signing_key_id") == expected_id:
        return None
    if manifest.get("signing_key_id") != expected_id:
        return Problem(
            WRONG_KEY,
            f"the manifest names signing key {manifest.get('signing_key_id')}, but the key given is {expected_id}: "
            "get the public key of the site that made the export (GET /api/keys/export) and pass it with --key",
        )
    return Problem(
        MANIFEST_ALTERED,
        f"the manifest's signature does not verify with key {expected_id}: "
        "the manifest was altered after it was signed",
    )


def verify_clip(clip_path: Path, manifest_path: Path, public_key: Ed25519PublicKey) -> VerifyReport:
    """Check a clip against its manifest and the manifest against its signature.

    Both checks always run, so a report names every failure: the clip altered
    (its sha256 or size differs from the manifest's), the manifest altered (the
    signature does not verify), signed by another key, or not a manifest at all.
    """
    report = VerifyReport(Path(clip_path), Path(manifest_path))
    try:
        manifest = json.loads(Path(manifest_path).read_bytes().decode("utf-8"))
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"format version {manifest.get('format_version')!r}; this tool reads version {FORMAT_VERSION}"
            )
        report.manifest = manifest
    except (OSError, ValueError) as exc:
        report.problems.append(Problem(MALFORMED_MANIFEST, f"{manifest_path}: cannot read the manifest: {exc}"))
        manifest = None
    try:
        report.clip_sha256, size = file_sha256(Path(clip_path))
    except OSError as exc:
        report.problems.append(Problem(CLIP_UNREADABLE, f"{clip_path}: cannot read the clip: {exc.strerror or exc}"))
        size = None
    if manifest is None:
        return report
    clip = manifest.get("clip") if isinstance(manifest.get("clip"), dict) else {}
    want_sha, want_size = clip.get("sha256"), clip.get("bytes")
    if not isinstance(want_sha, str):
        report.problems.append(Problem(MALFORMED_MANIFEST, "the manifest has no clip.sha256"))
    elif report.clip_sha256 is not None and (report.clip_sha256 != want_sha or size != want_size):
        report.problems.append(
            Problem(
                CLIP_ALTERED,
                f"{clip_path}: sha256 {report.clip_sha256} ({size} bytes) but the manifest says {want_sha} "
                f"({want_size} bytes): the clip was altered, or it is not the clip this manifest describes",
            )
        )
    problem = check_signature(manifest, public_key)
    if problem is not None:
        report.problems.append(problem)
    return report
