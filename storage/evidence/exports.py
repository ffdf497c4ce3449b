"""Evidence export jobs: a clip of a camera's recording plus its signed manifest.

``ExportService.create`` checks a request and records the job; ``run`` does the
work (in the caller's thread: the CLI) and ``start`` does it in a background
thread (the API). A run:

1. reads every source segment whole and checks it against its indexed sha256
   and size. A missing object or a mismatch stops the export naming the
   segment, unless the job allows gaps: then the segment is left out of the
   clip and listed in the manifest as ``missing`` or ``corrupt``. Altered video
   is never handed out silently;
2. builds the clip with the clip builder (``storage.archive.clips.plan_clip``: range
   GETs, no re-encode, edit list) from the verified segments, hashing it as it
   is written;
3. builds the manifest (``storage.evidence.manifest``), signs it with the site key, and
   stores both under ``exports/{id}/`` in the object store.

Progress (0..1) is the share of bytes read and written so far, kept in the
job's row so every API node sees it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import sessionmaker

from config.times import now_us
from storage.archive.clips import NoRecordings, clip_file_name, plan_clip
from storage.archive.timeline import ClipGap
from storage.index.segments import SegmentIndex
from storage.evidence.manifest import SourceSegment, build_manifest, manifest_json, sign_manifest
from storage.objects.store import ObjectNotFound, ObjectStore
from storage.index.registry import Registry
from storage.db.schema import ExportRow, SegmentRow
from storage.evidence.signing import key_id, load_signing_key
from config.times import iso_utc
from storage.archive.timeline import recorded_gaps

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "done", "failed")
STREAMS = ("main", "sub")
DEFAULT_MAX_SECONDS = 7 * 24 * 3600
PPM = 1_000_000


class ExportError(ValueError):
    """An export request that cannot be served as asked; the message says what to send instead."""


class CameraUnknown(ExportError):
    """No such camera (callers answer as for any unknown camera)."""


class SegmentUnusable(RuntimeError):
    """A source segment is missing from the store or its bytes do not match the index."""


@dataclass(frozen=True)
class ExportJob:
    """One export job as read back from its row."""

    id: str
    camera_id: str
    stream: str
    start_us: int
    end_us: int
    reason: str
    allow_gaps: bool
    created_by: str
    created_us: int
    status: str
    progress: float
    bytes: int
    clip_key: str | None
    manifest_key: str | None
    clip_sha256: str | None
    error: str
    finished_us: int | None

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["start"] = iso_utc(self.start_us)
        out["end"] = iso_utc(self.end_us)
        return out


def _job(row: ExportRow) -> ExportJob:
    return ExportJob(
        id=row.id,
        camera_id=row.camera_id,
        stream=row.stream,
        start_us=row.start_us,
        end_us=row.end_us,
        reason=row.reason,
        allow_gaps=row.allow_gaps,
        created_by=row.created_by,
        created_us=row.created_us,
        status=row.status,
        progress=row.progress_ppm / PPM,
        bytes=row.bytes,
        clip_key=row.clip_key,
        manifest_key=row.manifest_key,
        clip_sha256=row.clip_sha256,
        error=row.error,
        finished_us=row.finished_us,
    )


def manifest_file_name(clip_name: str) -> str:
    return clip_name.removesuffix(".mp4") + ".manifest.json"


class _IndexWithout:
    """The index as the clip builder sees it, minus segments that failed verification."""

    def __init__(self, index: SegmentIndex, skip_ids: set[int]):
        self._index = index
        self._skip = skip_ids

    def segments(self, *args: Any, **kwargs: Any) -> list[SegmentRow]:
        return [s for s in self._index.segments(*args, **kwargs) if s.id not in self._skip]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)


class _Progress:
    """Bytes done over bytes expected, written to the job row at most every 1/200th."""

    def __init__(self, report: Callable[[int], None], expected: int):
        self.report = report
        self.expected = max(1, expected)
        self.done = 0
        self.last_ppm = 0

    def set_expected(self, expected: int) -> None:
        self.expected = max(1, expected, self.done)

    def add(self, n: int) -> None:
        self.done += n
        # Never 1.0 before the job is finished: the last step (storing) is not counted in bytes.
        ppm = min(PPM - 1, self.done * PPM // self.expected)
        if ppm - self.last_ppm >= PPM // 200:
            self.last_ppm = ppm
            self.report(ppm)


class ExportService:
    """Creates, runs and lists export jobs for one site (index, registry, store, data dir)."""

    def __init__(
        self,
        engine: Engine,
        index: SegmentIndex,
        registry: Registry,
        store: ObjectStore,
        data_dir: Path,
        *,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        clock: Callable[[], int] = now_us,
    ):
        self.engine = engine
        self.index = index
        self.registry = registry
        self.store = store
        self.data_dir = Path(data_dir)
        self.max_seconds = max_seconds
        self._clock = clock
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._threads: dict[str, threading.Thread] = {}
        # Set by the app: a signed checkpoint of the audit chain, written into every manifest.
        self.audit_anchor: Callable[[], dict[str, Any]] | None = None

    # -- jobs ---------------------------------------------------------------------

    def create(
        self,
        camera_id: str,
        start_us: int,
        end_us: int,
        reason: str,
        created_by: str,
        *,
        stream: str = "main",
        allow_gaps: bool = False,
    ) -> ExportJob:
        """Check the request and record a queued job. Raises ``CameraUnknown``,
        ``storage.archive.clips.NoRecordings`` (with the gaps) or ``ExportError`` for a bad range."""
        if self.registry.camera(camera_id) is None:
            raise CameraUnknown(f"camera {camera_id} is not registered")
        if stream not in STREAMS:
            raise ExportError(f"camera {camera_id}: stream {stream!r} is unknown; use main or sub")
        if end_us <= start_us:
            raise ExportError(f"camera {camera_id}: start {iso_utc(start_us)} must be before end {iso_utc(end_us)}")
        if end_us - start_us > self.max_seconds * 1_000_000:
            raise ExportError(
                f"camera {camera_id}: the range is {(end_us - start_us) / 3.6e9:.1f} h, longer than the export maximum of "
                f"{self.max_seconds / 3600:g} h: split it into several exports (or raise SHARPEYES_EXPORT_MAX_SECONDS)"
            )
        if not reason.strip():
            raise ExportError(f"camera {camera_id}: give a reason for the export (case number, request)")
        if not self.index.segments(camera_id, stream, start_us, end_us):
            gaps = recorded_gaps(self.index, camera_id, stream, start_us, end_us, [], now=max(self._clock(), end_us))
            why = "; ".join(f"{g.reason} from {iso_utc(g.start_us)} to {iso_utc(g.end_us)}" for g in gaps)
            raise NoRecordings(
                f"camera {camera_id} has no {stream} recordings between {iso_utc(start_us)} and {iso_utc(end_us)}"
                f" ({why or 'nothing indexed'}); see GET /api/cameras/{camera_id}/recordings for what exists",
                gaps,
            )
        job_id = uuid.uuid4().hex
        with self._sessions() as s, s.begin():
            row = ExportRow(
                id=job_id,
                camera_id=camera_id,
                stream=stream,
                start_us=start_us,
                end_us=end_us,
                reason=reason.strip(),
                allow_gaps=allow_gaps,
                created_by=created_by[:64],
                created_us=self._clock(),
                status="queued",
                progress_ppm=0,
                bytes=0,
                error="",
            )
            s.add(row)
            s.flush()
            return _job(row)

    def get(self, job_id: str) -> ExportJob | None:
        with self._sessions() as s:
            row = s.get(ExportRow, job_id)
            return _job(row) if row else None

    def list(self, created_by: str | None = None, limit: int = 200) -> list[ExportJob]:
        """Jobs newest first; only ``created_by``'s when given."""
        q = select(ExportRow)
        if created_by is not None:
            q = q.where(ExportRow.created_by == created_by)
        with self._sessions() as s:
            return [_job(r) for r in s.scalars(q.order_by(ExportRow.created_us.desc(), ExportRow.id).limit(limit))]

    def _update(self, job_id: str, **values: Any) -> None:
        with self._sessions() as s, s.begin():
            s.execute(update(ExportRow).where(ExportRow.id == job_id).values(**values))

    def start(self, job_id: str) -> threading.Thread:
        """Run the job in a background thread; the clip is staged under ``{data_dir}/exports-tmp``."""
        work = self.data_dir / "exports-tmp" / f"{job_id}.mp4"

        def target() -> None:
            try:
                self.run(job_id, work)
            except Exception:  # noqa: BLE001 - the row carries the error; keep the thread quiet
                pass
            finally:
                work.unlink(missing_ok=True)
                work.with_name(manifest_file_name(work.name)).unlink(missing_ok=True)
                self._threads.pop(job_id, None)

        thread = threading.Thread(target=target, name=f"export-{job_id[:8]}", daemon=True)
        self._threads[job_id] = thread
        thread.start()
        return thread

    def wait(self, job_id: str, timeout: float | None = None) -> ExportJob | None:
        """Wait for a job started here to finish (tests, shutdown)."""
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.get(job_id)

    # -- the work -------------------------------------------------------------------

    def run(
        self,
        job_id: str,
        clip_path: Path,
        manifest_path: Path | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> ExportJob:
        """Do the job now: verify sources, write the clip to ``clip_path`` and the manifest
        beside it (or to ``manifest_path``), store both under ``exports/{id}/``.

        On failure the job is marked failed with the reason, the partial clip is
        removed, and the exception is raised again.
        """
        job = self.get(job_id)
        if job is None:
            raise KeyError(f"no export job {job_id}")
        clip_path = Path(clip_path)
        manifest_path = Path(manifest_path) if manifest_path else clip_path.with_name(manifest_file_name(clip_path.name))

        def report(ppm: int) -> None:
            self._update(job_id, progress_ppm=ppm)
            if on_progress is not None:
                on_progress(ppm / PPM)

        self._update(job_id, status="running", progress_ppm=0, error="")
        try:
            result = self._run(job, clip_path, manifest_path, report)
        except Exception as exc:
            clip_path.unlink(missing_ok=True)
            manifest_path.unlink(missing_ok=True)
            self._update(job_id, status="failed", error=str(exc)[:4000], finished_us=self._clock())
            log.warning("export %s of camera %s failed: %s", job_id, job.camera_id, exc)
            raise
        self._update(job_id, status="done", progress_ppm=PPM, finished_us=self._clock(), **result)
        if on_progress is not None:
            on_progress(1.0)
        done = self.get(job_id)
        assert done is not None
        return done

    def _run(self, job: ExportJob, clip_path: Path, manifest_path: Path, report: Callable[[int], None]) -> dict[str, Any]:
        rows = self.index.segments(job.camera_id, job.stream, job.start_us, job.end_us)
        if not rows:
            raise SegmentUnusable(f"camera {job.camera_id}: the recordings in the range are gone from the index (retention?)")
        progress = _Progress(report, 2 * sum(r.bytes for r in rows))
        sources: list[SourceSegment] = []
        skipped: set[int] = set()
        for row in rows:
            problem = self._check_segment(row, progress)
            if problem is None:
                sources.append(SourceSegment.from_row(row))
                continue
            status, detail = problem
            if not job.allow_gaps:
                raise SegmentUnusable(
                    f"camera {job.camera_id}: source segment {row.object_key} ({iso_utc(row.start_us)} to "
                    f"{iso_utc(row.end_us)}) {detail}; the export stopped. Restore the object, or export with "
                    "allow_gaps=true (sharpeyes export --allow-gaps) to leave it out; the manifest will list it"
                )
            skipped.add(row.id)
            sources.append(SourceSegment.from_row(row, status, detail))
            log.warning("export %s: skipping %s segment %s: %s", job.id, status, row.object_key, detail)
        if len(skipped) == len(rows):
            raise SegmentUnusable(f"camera {job.camera_id}: every source segment in the range is missing or corrupt")

        # Sources are verified above (verify="none" skips the builder's stat checks); the store
        # is still given, so the builder folds the first GOP's pre-roll as GET clip.mp4 does.
        plan = plan_clip(_IndexWithout(self.index, skipped), job.camera_id, job.stream, job.start_us, job.end_us,
                         store=self.store, verify="none")
        progress.set_expected(progress.done + plan.size)
        clip_path.parent.mkdir(parents=True, exist_ok=True)
        written = [0]

        def wrote(total: int) -> None:
            progress.add(total - written[0])
            written[0] = total

        with open(clip_path, "wb") as out:
            clip_sha = plan.write_to(self.store, out, wrote)
            out.flush()
            os.fsync(out.fileno())
        written_bytes = written[0]

        camera = self.registry.camera(job.camera_id)
        covered = (plan.first_us, plan.last_us)
        bad_rows = [r for r in rows if r.id in skipped]
        corrupt = {(max(s.start_us, job.start_us), min(s.end_us, job.end_us)): s.detail for s in sources if s.status == "corrupt"}
        gaps = []
        for g in recorded_gaps(self.index, job.camera_id, job.stream, job.start_us, job.end_us,
                               [r for r in rows if r.id not in skipped], bad_rows, now=max(self._clock(), job.end_us)):
            if g.reason == "storage_missing" and (g.start_us, g.end_us) in corrupt:
                gaps.append(ClipGap(g.start_us, g.end_us, "storage_corrupt", corrupt[(g.start_us, g.end_us)]))
            else:
                gaps.append(g)
        key = load_signing_key(self.data_dir)
        clip_name = clip_file_name(job.camera_id, job.start_us, job.end_us)
        manifest = sign_manifest(
            build_manifest(
                export_id=job.id,
                clip_name=clip_name,
                clip_sha256=clip_sha,
                clip_bytes=written_bytes,
                camera_id=job.camera_id,
                camera_name=camera.name if camera else "",
                stream=job.stream,
                requested=(job.start_us, job.end_us),
                covered=covered,
                segments=sources,
                gaps=gaps,
                exported_by=job.created_by,
                reason=job.reason,
                exported_us=self._clock(),
                allow_gaps=job.allow_gaps,
                signing_key_id=key_id(key.public_key()),
                audit_anchor=self.audit_anchor() if self.audit_anchor is not None else None,
            ),
            key,
        )
        data = manifest_json(manifest)
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path.write_bytes(data)
        clip_key = f"exports/{job.id}/{clip_name}"
        manifest_key = f"exports/{job.id}/{manifest_file_name(clip_name)}"
        self.store.put_file(clip_key, clip_path, clip_sha)
        self.store.put_bytes(manifest_key, data, hashlib.sha256(data).hexdigest())
        return {"bytes": written_bytes, "clip_key": clip_key, "manifest_key": manifest_key, "clip_sha256": clip_sha}

    def _check_segment(self, row: SegmentRow, progress: _Progress) -> tuple[str, str] | None:
        """None when the object's bytes hash to the indexed sha256, else (status, what is wrong)."""
        sha = hashlib.sha256()
        size = 0
        try:
            # Read one byte past the indexed size so an object that grew is caught too.
            for chunk in self.store.iter_range(row.object_key, 0, row.bytes + 1):
                sha.update(chunk)
                size += len(chunk)
                progress.add(len(chunk))
        except ObjectNotFound:
            return "missing", "is missing from the object store"
        if size != row.bytes or sha.hexdigest() != row.sha256:
            return "corrupt", (
                f"does not match the index: {size} bytes with sha256 {sha.hexdigest()}, "
                f"indexed {row.bytes} bytes with sha256 {row.sha256}"
            )
        return None

    def open_download(self, job: ExportJob, what: str) -> tuple[str, int, Iterator[bytes]]:
        """(file name, size, bytes) of a finished job's ``clip`` or ``manifest``."""
        key = job.clip_key if what == "clip" else job.manifest_key
        if job.status != "done" or key is None:
            raise ExportError(f"export {job.id} is {job.status}, not done: nothing to download yet")
        info = self.store.stat(key)
        return key.rsplit("/", 1)[-1], info.size, self.store.iter_range(key, 0, info.size)
