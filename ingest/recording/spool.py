"""``Spool``: the durable local journal between the camera and object storage.

Layout, per camera and stream: ``{root}/{camera}/{stream}/{start_us}.part`` while
a segment is being written (one fsync per fragment), ``{start_us}.mp4`` once it
is closed, and ``{start_us}.json`` beside either with what the index row needs.
A segment leaves the spool only after its object is stored and its row written.

Recovery after a crash: a ``.part`` file is cut back to its last complete
fragment, its end time is read from the fragments themselves, and it is closed
like any other segment. So a crash loses at most the GOP that was in memory.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from storage.index.keyframes import Keyframe
from storage.mp4.read import init_segment_size, parse_init, presented_at, scan_fragments

log = logging.getLogger(__name__)


@dataclass
class SpoolEntry:
    """One segment in the spool and everything known about it."""

    camera_id: str
    stream: str
    start_us: int
    codec: str
    width: int
    height: int
    audio_codec: str | None = None
    end_us: int | None = None
    keyframes: list[tuple[int, int]] = field(default_factory=list)  # (offset_us, moof byte offset)
    sha256: str | None = None
    drift_us: int = 0
    worker_id: str = ""
    # The camera's lease epoch when recording began (None without leases): the fencing
    # token the index checks, kept with the segment so recovery after a crash uses it too.
    lease_epoch: int | None = None
    # "live", or "device" for a segment backfilled from a GB/T 28181 device's recording.
    origin: str = "live"
    # File name stem, fixed when the segment opens (its start may still be refined
    # before it closes).
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = str(self.start_us)

    @property
    def closed(self) -> bool:
        return self.end_us is not None

    def keyframe_table(self) -> list[Keyframe]:
        return [Keyframe(t, o) for t, o in self.keyframes]


class Spool:
    def __init__(self, root: Path, quota_bytes: int, *, usage_cache_seconds: float = 0.5):
        self.root = root
        self.quota_bytes = quota_bytes
        root.mkdir(parents=True, exist_ok=True)
        # over_quota() is asked at every keyframe of every camera: a directory walk that
        # often would cost more than the recording, so its answer is reused briefly.
        self._usage_cache_seconds = usage_cache_seconds
        self._usage: tuple[float, int] | None = None
        self._usage_lock = threading.Lock()

    # -- paths ----------------------------------------------------------------

    def _dir(self, camera_id: str, stream: str) -> Path:
        return self.root / camera_id / stream

    def part_path(self, e: SpoolEntry) -> Path:
        return self._dir(e.camera_id, e.stream) / f"{e.name}.part"

    def media_path(self, e: SpoolEntry) -> Path:
        return self._dir(e.camera_id, e.stream) / f"{e.name}.mp4"

    def meta_path(self, e: SpoolEntry) -> Path:
        return self._dir(e.camera_id, e.stream) / f"{e.name}.json"

    # -- writing --------------------------------------------------------------

    def open(self, entry: SpoolEntry) -> Path:
        """Register a new segment; returns the ``.part`` path to write it to."""
        d = self._dir(entry.camera_id, entry.stream)
        d.mkdir(parents=True, exist_ok=True)
        self._write_meta(entry)
        return self.part_path(entry)

    def close(self, entry: SpoolEntry) -> None:
        """Mark a written segment closed: metadata first, then the rename that publishes it."""
        assert entry.end_us is not None
        self._write_meta(entry)
        os.replace(self.part_path(entry), self.media_path(entry))
        _fsync_dir(self.media_path(entry).parent)

    def discard(self, entry: SpoolEntry) -> None:
        for p in (self.part_path(entry), self.media_path(entry), self.meta_path(entry)):
            p.unlink(missing_ok=True)

    def _write_meta(self, entry: SpoolEntry) -> None:
        path = self.meta_path(entry)
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(entry), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # -- reading --------------------------------------------------------------

    def _entries(self, suffix: str) -> list[SpoolEntry]:
        out = []
        for meta in self.root.glob("*/*/*.json"):
            if not meta.with_suffix(suffix).exists():
                continue
            try:
                out.append(SpoolEntry(**json.loads(meta.read_text(encoding="utf-8"))))
            except (ValueError, TypeError) as exc:
                log.error("spool: unreadable metadata %s (%s); leaving it for an operator", meta, exc)
        out.sort(key=lambda e: (e.start_us, e.camera_id, e.stream))
        return out

    def closed_entries(self) -> list[SpoolEntry]:
        """Closed segments waiting for upload, oldest first."""
        return self._entries(".mp4")

    def bytes_used(self) -> int:
        total = 0
        for p in self.root.glob("*/*/*"):
            try:
                total += p.stat().st_size
            except OSError:
                pass  # uploaded (and deleted) while we looked: not in use any more
        with self._usage_lock:
            self._usage = (time.monotonic(), total)
        return total

    def over_quota(self) -> bool:
        """True while the spool holds more than its quota (answer at most
        ``usage_cache_seconds`` old)."""
        with self._usage_lock:
            cached = self._usage
        if cached is None or time.monotonic() - cached[0] > self._usage_cache_seconds:
            return self.bytes_used() > self.quota_bytes
        return cached[1] > self.quota_bytes

    def backlog(self) -> tuple[int, int]:
        """(bytes, segments) of closed segments waiting for upload."""
        n = size = 0
        for e in self.closed_entries():
            try:
                size += self.media_path(e).stat().st_size
                n += 1
            except OSError:
                pass
        return size, n

    def last_end_us(self, camera_id: str, stream: str) -> int | None:
        ends = [e.end_us for e in self.closed_entries() if e.camera_id == camera_id and e.stream == stream]
        return max((e for e in ends if e is not None), default=None)

    # -- recovery -------------------------------------------------------------

    def recover(self) -> list[SpoolEntry]:
        """Close every ``.part`` left by a crash; returns the entries it closed.

        A part file without a single complete fragment holds no playable video:
        it is removed, and its span is covered by the worker_restart gap.
        """
        recovered = []
        for entry in self._entries(".part"):
            path = self.part_path(entry)
            try:
                closed = _finalise_part(entry, path)
            except (OSError, ValueError) as exc:
                log.warning("spool: %s/%s %s has no usable fragment (%s); removing it",
                            entry.camera_id, entry.stream, path.name, exc)
                self.discard(entry)
                continue
            self.close(closed)
            recovered.append(closed)
            log.info("spool: recovered %s/%s segment at %d (%d fragments)",
                     entry.camera_id, entry.stream, entry.start_us, len(closed.keyframes))
        return recovered

    def adopt(self, other_root: Path, camera_id: str) -> list[SpoolEntry]:
        """Take over ``camera_id``'s segments from another worker's spool (``other_root``,
        on a shared volume) after taking the camera's lease from it; returns them,
        closed, for the uploader. They keep their recorder's worker id and lease
        epoch: the index accepts them for the time before the takeover.

        Closed segments are moved (one rename each). A ``.part`` is *copied* up to
        its last complete fragment and then removed: if its worker was only paused,
        not dead, it may still append to its open file, and must not change ours."""
        adopted = []
        for meta in sorted(other_root.glob(f"{camera_id}/*/*.json")):
            try:
                entry = SpoolEntry(**json.loads(meta.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                log.error("spool: cannot adopt %s (%s); leaving it for an operator", meta, exc)
                continue
            src_mp4, src_part = meta.with_suffix(".mp4"), meta.with_suffix(".part")
            dest = self._dir(entry.camera_id, entry.stream)
            dest.mkdir(parents=True, exist_ok=True)
            if src_mp4.exists():
                try:
                    os.replace(src_mp4, self.media_path(entry))
                except FileNotFoundError:
                    continue  # its own uploader finished it meanwhile
                self._write_meta(entry)
                meta.unlink(missing_ok=True)
                adopted.append(entry)
                continue
            if not src_part.exists():
                continue
            try:
                data = src_part.read_bytes()
            except FileNotFoundError:
                continue
            part = self.part_path(entry)
            with open(part, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._write_meta(entry)
            try:
                closed = _finalise_part(entry, part)
            except (OSError, ValueError) as exc:
                log.warning("spool: adopted %s/%s %s has no usable fragment (%s); nothing to upload",
                            entry.camera_id, entry.stream, src_part.name, exc)
                self.discard(entry)
            else:
                self.close(closed)
                adopted.append(closed)
            src_part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
        _fsync_dir(self.root)
        if adopted:
            with self._usage_lock:
                self._usage = None
        return adopted

    def drop_oldest(self, keep: tuple[str, str, int] | None = None) -> SpoolEntry | None:
        """Delete the oldest closed segment (the ``drop-oldest-unuploaded`` policy),
        except ``keep`` (camera, stream, start_us): the one being uploaded right now."""
        for entry in self.closed_entries():
            if (entry.camera_id, entry.stream, entry.start_us) == keep:
                continue
            self.discard(entry)
            with self._usage_lock:
                self._usage = None
            return entry
        return None


def _finalise_part(entry: SpoolEntry, path: Path) -> SpoolEntry:
    data = path.read_bytes()
    init_size = init_segment_size(data)
    tracks = parse_init(data[:init_size])
    video = next((t for t in tracks.values() if t.handler == "vide"), None)
    if video is None:
        raise ValueError("no video track")
    fragments = scan_fragments(data, tracks, init_size)
    if not fragments:
        raise ValueError("no complete fragment")
    end = fragments[-1].end
    with open(path, "r+b") as f:
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())
    keyframes = []
    end_ticks = 0
    for frag in fragments:
        run = frag.runs.get(video.track_id)
        if run is None or not run.samples:
            continue
        # Presentation times (a keyframe is shown first in its closed GOP; B-frames are
        # shown in another order than stored, so the end is the latest shown frame's).
        keyframes.append((presented_at(run.samples[0], video) * 1_000_000 // video.timescale, frag.moof_offset))
        end_ticks = max(end_ticks, max(presented_at(smp, video) + smp.duration for smp in run.samples))
    entry.keyframes = keyframes
    entry.end_us = entry.start_us + end_ticks * 1_000_000 // video.timescale
    entry.sha256 = None  # the uploader hashes recovered files from disk
    return entry


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


