"""One spool segment written by the native recorder: access units in, fMP4 out, a fragment a GOP.

It has the interface of the segmenter's PyAV ``_OpenSegment`` (``write_video``,
``write_audio``, ``finish``, ``abort``, ``base_pts``, ``gop_pts``, ``entry``, ``file``), so
``Segmenter`` keeps one time model for both pullers. Frames of the open GOP are held in
memory (references to the access units, no copy) until the next keyframe; then the GOP
becomes one ``moof``+``mdat`` (``storage.mp4.fragments``), queued to the loop's writer
thread as its pieces (one ``writev``, no join into one buffer) and fsync'd there in the same
job, and its keyframe-table row is added, as the PyAV path does.

Decode times follow ``storage.mp4.decode_time`` (the rule of the B-frames work): the
reorder depth comes from the SPS, and composition offsets go in the ``trun``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config.times import iso_utc
from ingest.access_unit import AccessUnit
from ingest.recording.background_files import BackgroundFiles, BackgroundHashingFile
from ingest.recording.spool import SpoolEntry
from storage.mp4.decode_time import DecodeTimes, reorder_depth
from storage.mp4.fragments import (
    AudioSample, AudioTrack, VideoSample, VideoTrack, fragment_parts, init_segment, length_prefixed_parts,
)
from storage.mp4.sps import SequenceInfo

FRAME_90K = 3600  # 25 fps: the duration of a last frame whose successor is unknown
AAC_FRAME = 1024


class NativePacket:
    """An access unit as ``Segmenter.push_video`` reads it (``pts``, ``dts``, ``is_keyframe``,
    ``bytes()``); ``dts`` derived per connection (``storage.mp4.decode_time``), None: = pts."""

    __slots__ = ("au", "pts", "dts", "is_keyframe")

    def __init__(self, au: AccessUnit, dts: int | None = None) -> None:
        self.au = au
        self.pts = au.pts_90k
        self.dts = dts
        self.is_keyframe = au.keyframe

    def __bytes__(self) -> bytes:
        return b"".join(b"\x00\x00\x00\x01" + n for n in self.au.nals)


class AudioPacket:
    """One AAC frame placed on the video's 90 kHz timeline (``pts``) by the session."""

    __slots__ = ("data", "pts")

    def __init__(self, data: bytes, pts: int) -> None:
        self.data = data
        self.pts = pts


@dataclass
class NativeVideoInput:
    """What a native connection tells the segmenter, shaped like the PyAV stream it reads."""

    codec: str  # "h264" | "h265"
    parameter_sets: tuple[bytes, ...]
    width: int
    height: int
    info: SequenceInfo | None
    audio: AudioTrack | None
    files: BackgroundFiles

    @property
    def ffmpeg_name(self) -> str:
        return "hevc" if self.codec == "h265" else "h264"


class NativeOpenSegment:
    """One spool file being written from access units, one fragment per GOP."""

    def __init__(self, path: Path, entry: SpoolEntry, source: NativeVideoInput,
                 parameter_sets: tuple[bytes, ...] | None = None) -> None:
        self.entry = entry
        self.file = BackgroundHashingFile(path, source.files)
        params = parameter_sets or source.parameter_sets
        track = VideoTrack(source.codec, params, entry.width, entry.height)
        self.audio = source.audio if entry.audio_codec else None
        self._track = track
        # Written at the first frame, when its decode delay (the edit list's start) is known.
        self._init_written = False
        self._delay = 0  # 90 kHz: file decode time = connection dts - base_pts + delay
        self.base_pts = 0
        self.gop_pts: int | None = None
        self.last_video_dts = -1
        self._dts = DecodeTimes(reorder_depth(source.info), FRAME_90K)
        self._gop: list[tuple[AccessUnit, int, int]] = []  # (unit, dts, pts), segment-relative 90 kHz
        self._audio: list[bytes] = []
        self._audio_start: int | None = None  # in samples, segment-relative
        self._audio_next = 0
        self._sequence = 0
        self._last_duration = FRAME_90K

    def _write_init(self) -> None:
        entry = self.entry
        self.file.write(init_segment(self._track, self.audio, {
            "title": f"{entry.camera_id}/{entry.stream}",
            "comment": f"sharpeyes start_us={entry.start_us}",
            "creation_time": iso_utc(entry.start_us, "microseconds"),
        }, video_media_time=self._delay))
        self._init_written = True

    def write_video(self, packet: NativePacket, pts: int | None = None, dts: int | None = None) -> None:
        """One access unit with the connection's ``pts``/``dts`` (the segmenter's, 90 kHz;
        without them, decode times are derived here). The first keyframe's decode delay
        becomes the edit list's start, so decode times in the file never go below 0."""
        if pts is None or dts is None:
            dts, pts = self._dts.push(packet.pts - self.base_pts)
        else:
            pts, dts = pts - self.base_pts, dts - self.base_pts
        if not self._init_written:
            self._delay = max(0, -dts)
            self._write_init()
        dts, pts = dts + self._delay, pts + self._delay
        if dts <= self.last_video_dts:
            return  # a duplicate the MP4 cannot hold
        if packet.is_keyframe and self._gop:
            offset = self.file.size
            self._flush(dts, sync=True)  # the GOP on disk: written and fsync'd in one writer job
            assert self.gop_pts is not None
            self.entry.keyframes.append((self._us(self.gop_pts), offset))
        if packet.is_keyframe:
            self.gop_pts = pts - self._delay  # presentation time, from the segment's start
        if self._gop or packet.is_keyframe:
            self._gop.append((packet.au, dts, pts))
        self.last_video_dts = dts

    def write_audio(self, packet: AudioPacket) -> None:
        if self.audio is None or self.gop_pts is None:
            return
        rate = self.audio.sample_rate
        t = (packet.pts - self.base_pts) * rate // 90000
        if t < 0:
            return
        if self._audio_start is None:
            self._audio_start = self._audio_next = t
        elif t < self._audio_next - AAC_FRAME // 2:
            return  # behind what is written: a duplicate
        self._audio.append(packet.data)
        self._audio_next += AAC_FRAME

    def _flush(self, next_dts: int | None, sync: bool = False) -> None:
        gop = self._gop
        self._gop = []
        samples = []
        for i, (au, dts, pts) in enumerate(gop):
            following = gop[i + 1][1] if i + 1 < len(gop) else next_dts
            duration = following - dts if following is not None and following > dts else self._last_duration
            self._last_duration = duration
            samples.append(VideoSample(length_prefixed_parts(au.nals), duration, pts - dts, au.keyframe))
        audio = [AudioSample(a, AAC_FRAME) for a in self._audio]
        audio_start = self._audio_start or 0
        self._audio = []
        self._audio_start = None if not audio else self._audio_next
        self._sequence += 1
        # As pieces: the access units' NAL units go to the file without being copied into one buffer.
        self.file.write_parts(fragment_parts(self._sequence, gop[0][1], samples, audio_start, audio), sync=sync)

    def _us(self, pts: int) -> int:
        return pts * 1_000_000 // 90000

    def finish(self) -> None:
        """Write the last fragment and close the file (waits for the writer thread)."""
        if not self._init_written:
            self._write_init()
        if self._gop:
            offset = self.file.size
            self._flush(None)
            assert self.gop_pts is not None
            self.entry.keyframes.append((self._us(self.gop_pts), offset))
        self.file.close()
        self.entry.sha256 = self.file.sha256

    def abort(self) -> None:
        self._gop = []
        try:
            self.file.close()
        except OSError:
            pass  # the file is discarded anyway
