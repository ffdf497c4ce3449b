"""``Segmenter``: access units in, GOP-aligned fragmented MP4 segments out (into the spool).

Time model (docs/recording.md): a wall-clock anchor is taken at the first packet
of a connection; every later time is the anchor plus media time from the
camera's timestamps. A segment is cut at the first keyframe at or past the target
duration, so segments of one run are contiguous to the tick. Continuity is judged
on decode time (DTS, ``storage.mp4.decode_time.breaks_run``): a jump backwards, or
forwards past ``max_jump_us``, or clock drift past ``max_drift_us`` ends the run and
takes a new anchor, never overlapping the segment before. A camera that sends
B-frames has presentation times (PTS) that go back and forth in decode order; that
is not a jump. Segment start and end are presentation times of keyframes (closed
GOPs: a keyframe is presented before every frame decoded after it).

In the file, samples are in decode order: ``tfdt`` and durations from the DTS, the
composition offsets (PTS - DTS) in each ``trun``, and an edit list (``delay_moov``
lets the muxer write it) starts presentation at the first keyframe, hiding the
decoder's start-up delay. So a segment's media time 0 is its start in presentation
(``storage.mp4.read.presented_at``), and its decode time 0 is that delay earlier.
Packets come with their DTS set (the session derives it from the PTS,
``ingest.recording.access_units.DecodeTimestamper``); a packet without one is taken
as not reordered. See docs/bframes.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from config.times import iso_utc
from storage.mp4.decode_time import breaks_run
from storage.mp4.nal import parameter_set_nals, split_annexb
from storage.mp4.read import init_segment_size
from ingest.recording.native_segment import NativeOpenSegment, NativePacket, NativeVideoInput
from ingest.recording.spool import Spool, SpoolEntry
from storage.mp4.sps import parse_sps

if TYPE_CHECKING:
    import av  # PyAV loads with the first PyAV segment: a native-only worker never carries it

log = logging.getLogger(__name__)


def _is_av_error(exc: BaseException) -> bool:
    """An FFmpeg error from PyAV (none can have been raised when PyAV was never loaded)."""
    av_module = sys.modules.get("av")
    return av_module is not None and isinstance(exc, av_module.error.FFmpegError)

Clock = Callable[[], int]  # wall clock, microseconds since the epoch

SUPPORTED_VIDEO = {"h264": "h264", "hevc": "h265"}
MP4_AUDIO = {"aac"}  # G.711 and others are not recorded: see docs/recording.md


class HashingFile:
    """A write-only file that hashes what passes through and fsyncs on demand."""

    HEAD_BYTES = 65536

    def __init__(self, path: Path):
        self._f = open(path, "wb", buffering=0)
        self._sha = hashlib.sha256()
        self.size = 0
        self.head = bytearray()  # the first bytes written: the init segment is in there

    def write(self, data: bytes) -> int:
        n = self._f.write(data)
        self._sha.update(memoryview(data)[:n])
        if self.size < self.HEAD_BYTES:
            self.head += memoryview(data)[:min(n, self.HEAD_BYTES - self.size)]
        self.size += n
        return n

    def flush(self) -> None:
        pass  # unbuffered

    def sync(self) -> None:
        os.fsync(self._f.fileno())

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if not self._f.closed:
            os.fsync(self._f.fileno())
            self._f.close()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()


@dataclass
class ClosedSegment:
    entry: SpoolEntry


class _OpenSegment:
    """One spool file being written by PyAV's MP4 muxer, one fragment per GOP."""

    def __init__(self, path: Path, entry: SpoolEntry, video: av.video.stream.VideoStream,
                 audio: av.audio.stream.AudioStream | None, extradata: bytes | None):
        """``entry.width``/``height`` win over the template's: they change when the
        camera switches resolution mid-stream."""
        import av

        self.entry = entry
        self.file = HashingFile(path)
        self.container = av.open(
            self.file, "w", format="mp4",
            options={
                # delay_moov: the moov is written with the first fragment, once the muxer
                # knows the first composition offset, so it writes the edit list that
                # hides a B-frame stream's start-up delay.
                "movflags": "frag_keyframe+empty_moov+delay_moov+default_base_moof",
                # Packets arrive in order already. Without this a camera whose audio
                # goes quiet would hold video in the muxer's interleaving queue for
                # up to 10 s, past the one-GOP loss bound.
                "max_interleave_delta": "200000",
            },
        )
        # The segment names its camera and start inside the file, so two segments
        # with identical pictures never share a hash and a lone file says what it is.
        self.container.metadata["title"] = f"{entry.camera_id}/{entry.stream}"
        self.container.metadata["comment"] = f"sharpeyes start_us={entry.start_us}"
        self.container.metadata["creation_time"] = iso_utc(entry.start_us, "microseconds")
        self.video = self.container.add_stream_from_template(video)
        if extradata:
            self.video.codec_context.extradata = extradata
        self.video.codec_context.width = entry.width
        self.video.codec_context.height = entry.height
        if video.codec_context.name == "hevc":
            # Apple players and browsers only take H.265 in MP4 tagged hvc1.
            self.video.codec_tag = "hvc1"
        self.audio = self.container.add_stream_from_template(audio) if audio is not None else None
        self.video_tb: Fraction = video.time_base
        self.audio_tb: Fraction | None = audio.time_base if audio is not None else None
        self.base_pts = 0  # video pts of the first keyframe, in video_tb: the segment's start
        self.gop_pts: int | None = None  # presentation time of the open GOP's keyframe, from base_pts
        self.last_video_dts: int | None = None
        self.last_audio_dts = -1

    def write_video(self, packet: av.Packet, pts: int, dts: int) -> None:
        """Mux one access unit with the camera's ``pts`` and ``dts`` (video time base).

        Times are given relative to the keyframe's pts, so a B-frame stream's first dts
        is negative: the muxer then moves every track by that delay and writes an edit
        list that starts presentation at the keyframe (given a dts of 0 instead, it would
        keep the delay as an empty edit)."""
        rel_dts = dts - self.base_pts
        rel_pts = pts - self.base_pts
        if self.last_video_dts is not None and rel_dts <= self.last_video_dts:
            return  # a duplicate the muxer would refuse
        if packet.is_keyframe and self.gop_pts is not None:
            # Muxing this keyframe flushes the previous GOP as one fragment (the first
            # one together with the init segment: delay_moov).
            offset = self.file.size
            self._mux(packet, self.video, rel_pts, rel_dts)
            self.entry.keyframes.append((self._us(self.gop_pts), offset))
            self._place_first_fragment()
            self.file.sync()
        else:
            self._mux(packet, self.video, rel_pts, rel_dts)
        if packet.is_keyframe:
            self.gop_pts = pts - self.base_pts
        self.last_video_dts = rel_dts

    def _place_first_fragment(self) -> None:
        """The first fragment starts after the init segment, which the muxer writes with it
        (delay_moov), perhaps only at a later packet (it interleaves audio): until then its
        table entry says 0."""
        table = self.entry.keyframes
        if table and table[0][1] == 0 and self.file.size:
            table[0] = (table[0][0], init_segment_size(bytes(self.file.head)))

    def write_audio(self, packet: av.Packet) -> None:
        if self.audio is None or self.audio_tb is None or packet.pts is None:
            return
        start = self.base_pts * self.video_tb
        pts = int(packet.pts - start / self.audio_tb)
        if pts < 0 or pts <= self.last_audio_dts:
            return
        self._mux(packet, self.audio, pts, pts)
        self._place_first_fragment()
        self.last_audio_dts = pts

    def _mux(self, packet: av.Packet, stream: av.stream.Stream, pts: int, dts: int) -> None:
        # The same packet goes on to live viewers: mux it with segment-relative
        # times, then give it back exactly as it came (the muxer rescales in place).
        saved = packet.pts, packet.dts, packet.time_base, packet.stream
        packet.pts = pts
        packet.dts = dts
        packet.stream = stream
        try:
            self.container.mux(packet)
        finally:
            packet.time_base = saved[2]
            packet.pts, packet.dts = saved[0], saved[1]
            packet.stream = saved[3]

    def _us(self, pts: int) -> int:
        return int(pts * self.video_tb * 1_000_000)

    def finish(self) -> None:
        """Write the last fragment and close the file."""
        offset = self.file.size
        had_gop = self.gop_pts is not None
        self.container.close()
        if had_gop and self.file.size > offset:
            self.entry.keyframes.append((self._us(self.gop_pts or 0), offset))
        self._place_first_fragment()
        self.file.close()
        self.entry.sha256 = self.file.sha256

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the file is discarded anyway
            pass
        self.file.close()


class Segmenter:
    """Cuts one camera stream into segments in the spool; lives as long as its session."""

    def __init__(
        self,
        camera_id: str,
        stream: str,
        spool: Spool,
        *,
        target_us: int,
        clock: Clock,
        on_closed: Callable[[SpoolEntry], None],
        on_started: Callable[[int], None] = lambda start_us: None,
        on_run_started: Callable[[int], None] = lambda start_us: None,
        on_open: Callable[[SpoolEntry], None] = lambda entry: None,
        worker_id: str = "",
        max_jump_us: int = 5_000_000,
        max_drift_us: int = 2_000_000,
        last_end_us: int | None = None,
        admit: Callable[[], bool] = lambda: True,
        on_refused: Callable[[int], None] = lambda t_us: None,
        origin: str = "live",
    ):
        self.camera_id = camera_id
        self.stream = stream
        self.origin = origin  # written into every segment: "live", or "device" (GB/T 28181 backfill)
        self.spool = spool
        self.target_us = target_us
        self.clock = clock
        self.on_closed = on_closed
        self.on_started = on_started
        self.on_run_started = on_run_started
        self.on_open = on_open
        self.worker_id = worker_id
        self.max_jump_us = max_jump_us
        self.max_drift_us = max_drift_us
        # End of the last segment handed to the spool: a new segment never starts before it.
        self.last_end_us = last_end_us
        # The stop-recording quota policy: asked at every keyframe; while it says no,
        # no segment is open and on_refused(t) was called once at the first refusal.
        self.admit = admit
        self.on_refused = on_refused
        self.refusals = 0
        self._refusing = False
        self._video: av.video.stream.VideoStream | None = None
        self._audio: av.audio.stream.AudioStream | None = None
        # The native puller's input instead of a PyAV stream (storage.mp4.fragments writes).
        self._native: NativeVideoInput | None = None
        self._extradata: bytes | None = None
        # (width, height) decoded from the stream after an in-band change; None: the input's.
        self._dimensions: tuple[int, int] | None = None
        self._seg: _OpenSegment | None = None
        self._anchor_pts: int | None = None
        self._anchor_us = 0
        self._anchor_drift = 0
        self._last_dts: int | None = None  # decode time of the last frame: continuity
        self._end_pts: int | None = None  # latest presentation time in the run: where it ends
        self._us_num, self._us_den = 1, 1
        self._frame_us = 40_000
        self._drift_us = 0
        self._reanchor = False
        # Until the first segment of a run is closed its start may still move earlier
        # (see _clamp_to_arrival); after that every time in the run is fixed.
        self._run_settled = False
        # Tell the session where recording resumed (it ends the gap there) when the
        # first segment after a break closes: a new run, or the end of a refusal.
        self._announce_start = True
        self.segments_closed = 0
        self.discontinuities = 0

    # -- input lifecycle --------------------------------------------------------

    def start_input(self, video: av.video.stream.VideoStream, audio: av.audio.stream.AudioStream | None) -> None:
        """A new connection: new stream parameters and a new time anchor."""
        self.end_run()
        self._video = video
        self._native = None
        # Ticks to microseconds in integers: Fraction arithmetic on every packet is
        # measurable with dozens of cameras in one process.
        us_per_tick = Fraction(video.time_base) * 1_000_000
        self._us_num, self._us_den = us_per_tick.numerator, us_per_tick.denominator
        self._audio = audio if audio is not None and audio.codec_context.name in MP4_AUDIO else None
        self._extradata = None
        self._dimensions = None
        self._anchor_pts = None
        self._last_dts = None
        self._end_pts = None

    def start_native_input(self, source: NativeVideoInput) -> None:
        """A new native connection (90 kHz access units, AAC frames on the same timeline)."""
        self.end_run()
        self._video = None
        self._native = source
        us_per_tick = Fraction(1, 90000) * 1_000_000
        self._us_num, self._us_den = us_per_tick.numerator, us_per_tick.denominator
        self._audio = None
        self._extradata = None
        self._dimensions = None
        self._anchor_pts = None
        self._last_dts = None
        self._end_pts = None

    @property
    def _codec_name(self) -> str:
        """FFmpeg's name of the input's video codec ("h264" or "hevc")."""
        if self._native is not None:
            return self._native.ffmpeg_name
        assert self._video is not None
        return self._video.codec_context.name

    def end_run(self) -> None:
        """The run of continuous media time ended (disconnect, time jump, stop):
        close the open segment after its last presented frame and forget the anchor."""
        if self._seg is not None and self._end_pts is not None:
            self._close(self._end_pts, self._frame_us)
        elif self._seg is not None:
            self._abort()
        self._anchor_pts = None
        self._last_dts = None
        self._end_pts = None
        self._run_settled = False
        self._announce_start = True

    # -- packets ------------------------------------------------------------------

    def push_video(self, packet: av.Packet, arrival_us: int | None = None) -> None:
        """One whole access unit (see ``AccessUnitJoiner``) in decode order, with its DTS
        set (see ``DecodeTimestamper``; none: the PTS), and when it arrived (default: now
        on the injected clock)."""
        assert self._video is not None or self._native is not None, "start_input first"
        pts = packet.pts
        dts = pts if packet.dts is None else min(packet.dts, pts)
        now = self.clock() if arrival_us is None else arrival_us
        if self._anchor_pts is None:
            self._set_anchor(pts, now)
        elif self._last_dts is not None:
            step = dts - self._last_dts
            if breaks_run(self._last_dts, dts, self.max_jump_us * self._us_den // self._us_num):
                log.warning("%s/%s: decode time jumped by %d ms; closing the segment and taking a new anchor",
                            self.camera_id, self.stream, step * self._us_num // self._us_den // 1000)
                self.discontinuities += 1
                self.end_run()
                self._set_anchor(pts, now)
            elif step * self._us_num // self._us_den < 1_000_000:
                self._frame_us = step * self._us_num // self._us_den
        if not self._run_settled:
            self._clamp_to_arrival(pts, now)
        if packet.is_keyframe:
            self._drift_us = now - self._t_us(pts)
            if abs(self._drift_us - self._anchor_drift) > self.max_drift_us:
                self._reanchor = True
            self._on_keyframe(packet, pts, now)
        if self._seg is not None:
            self._seg.write_video(packet, pts, dts)
        self._last_dts = dts
        if self._end_pts is None or pts > self._end_pts:
            self._end_pts = pts

    def push_audio(self, packet: av.Packet) -> None:
        if self._seg is not None and (self._audio is not None or self._native is not None):
            self._seg.write_audio(packet)  # type: ignore[arg-type]

    # -- internals ------------------------------------------------------------------

    def _set_anchor(self, pts: int, now: int) -> None:
        self._anchor_pts = pts
        self._anchor_us = now
        self._anchor_drift = 0
        self._drift_us = 0

    def _clamp_to_arrival(self, pts: int, now: int) -> None:
        """A frame cannot arrive before it was captured. Right after connecting, a
        camera or relay often sends buffered frames in a burst, so the first
        arrival is late relative to the frames after it: move the anchor earlier
        until no frame of the run's first segment seems to come from the future."""
        ahead = self._t_us(pts) - now
        if ahead > 0:
            self._anchor_us -= ahead

    def _t_us(self, pts: int) -> int:
        assert self._anchor_pts is not None
        return self._anchor_us + (pts - self._anchor_pts) * self._us_num // self._us_den

    def _on_keyframe(self, packet: av.Packet, pts: int, now: int) -> None:
        t = self._t_us(pts)
        admitted = self.admit()
        codec = self._codec_name
        # In-band parameter sets, once a GOP: what the frames really use. New ones (a
        # camera switched resolution or profile) need a new segment with a new header.
        if isinstance(packet, NativePacket):
            # The access unit's NAL units are already apart: no Annex-B join and re-split a GOP.
            in_band = annexb_parameter_sets(packet.au.nals, codec)
        else:
            in_band = parameter_sets(bytes(packet), codec)
        changed = self._seg is not None and in_band is not None and in_band != self._extradata
        if self._seg is not None and (t - self._t_us(self._seg.base_pts) >= self.target_us or self._reanchor
                                      or not admitted or changed):
            if changed:
                log.info("%s/%s: new parameter sets in-band (resolution or profile change); new segment",
                         self.camera_id, self.stream)
                self._dimensions = (_sps_dimensions(codec, in_band) if self._native is not None
                                    else _dimensions(packet, codec, in_band))
            self._close(pts)
            if self._reanchor:
                log.info("%s/%s: clock drift %d ms past the bound; new anchor",
                         self.camera_id, self.stream, self._drift_us // 1000)
                self._set_anchor(pts, now)
                self._reanchor = False
                t = self._t_us(pts)
        if self._seg is None:
            if admitted:
                self._refusing = False
                self._open(packet, pts, t, in_band)
            elif not self._refusing:
                self._refusing = True
                self._announce_start = True
                self.refusals += 1
                log.error("%s/%s: spool over quota (stop-recording): not recording until it drains",
                          self.camera_id, self.stream)
                self.on_refused(t)

    def _open(self, packet: av.Packet, pts: int, t: int, in_band: bytes | None) -> None:
        if self.last_end_us is not None and t < self.last_end_us:
            # Never overlap what is already recorded: shift the anchor forward.
            self._anchor_us += self.last_end_us - t
            t = self.last_end_us
        if self._native is not None:
            self._open_native(self._native, pts, t, in_band)
            return
        assert self._video is not None
        ctx = self._video.codec_context
        entry = SpoolEntry(
            camera_id=self.camera_id,
            stream=self.stream,
            start_us=t,
            codec=SUPPORTED_VIDEO.get(ctx.codec.canonical_name, ctx.name),  # canonical: libx264 -> h264
            width=self._dimensions[0] if self._dimensions else ctx.width,
            height=self._dimensions[1] if self._dimensions else ctx.height,
            audio_codec=self._audio.codec_context.name if self._audio is not None else None,
            worker_id=self.worker_id,
            origin=self.origin,
            name=str(t),
        )
        # Prefer the parameter sets the camera sends in-band at this keyframe: they
        # are what the frames really use (the SDP's may be stale or missing), and in
        # Annex B, which tells the MP4 muxer to convert the Annex B frames.
        if in_band:
            self._extradata = in_band
        self.on_open(entry)
        path = self.spool.open(entry)
        self._seg = _OpenSegment(path, entry, self._video, self._audio, self._extradata)
        self._seg.base_pts = pts
        self.on_started(t)

    def _open_native(self, source: NativeVideoInput, pts: int, t: int, in_band: bytes | None) -> None:
        params = tuple(split_annexb(in_band)) if in_band else source.parameter_sets
        dims = self._dimensions or (source.width, source.height)
        entry = SpoolEntry(
            camera_id=self.camera_id,
            stream=self.stream,
            start_us=t,
            codec=source.codec,
            width=dims[0],
            height=dims[1],
            audio_codec="aac" if source.audio is not None else None,
            worker_id=self.worker_id,
            name=str(t),
        )
        if in_band:
            self._extradata = in_band
        self.on_open(entry)
        path = self.spool.open(entry)
        seg = NativeOpenSegment(path, entry, source, params)
        seg.base_pts = pts
        self._seg = seg  # type: ignore[assignment]
        self.on_started(t)

    def _close(self, end_pts: int, extra_us: int = 0) -> None:
        """Close the open segment where ``end_pts`` (+ ``extra_us``) begins.

        Start and end are computed now, from the anchor as it stands at the end:
        for the first segment of a run the anchor may have moved since it opened.
        """
        seg, self._seg = self._seg, None
        assert seg is not None
        start = self._t_us(seg.base_pts)
        if self.last_end_us is not None and start < self.last_end_us:
            self._anchor_us += self.last_end_us - start
            start = self.last_end_us
        end = self._t_us(end_pts) + extra_us
        try:
            seg.finish()
        except Exception as exc:  # noqa: BLE001 - only OSError and FFmpeg's errors are kept going
            if not isinstance(exc, OSError) and not _is_av_error(exc):
                raise
            log.error("%s/%s: could not finish segment at %d: %s; keeping what was written",
                      self.camera_id, self.stream, start, exc)
            seg.file.close()
        seg.entry.start_us = start
        seg.entry.end_us = max(end, start + 1)
        seg.entry.drift_us = self._drift_us
        if not seg.entry.keyframes:
            self.spool.discard(seg.entry)
            return
        self.spool.close(seg.entry)
        self.last_end_us = seg.entry.end_us
        self.segments_closed += 1
        self._run_settled = True
        if self._announce_start:
            self._announce_start = False
            self.on_run_started(start)
        self.on_closed(seg.entry)

    def _abort(self) -> None:
        seg, self._seg = self._seg, None
        if seg is not None:
            seg.abort()
            self.spool.discard(seg.entry)

    @property
    def recording(self) -> bool:
        return self._seg is not None


def _sps_dimensions(codec: str, annexb: bytes) -> tuple[int, int] | None:
    """Width and height from the SPS among Annex-B parameter sets (the native path: no decoder)."""
    name = "h265" if codec == "hevc" else "h264"
    for nal in split_annexb(annexb):
        kind = (nal[0] >> 1) & 0x3F if name == "h265" else nal[0] & 0x1F
        if kind == (33 if name == "h265" else 7):
            try:
                info = parse_sps(name, nal)
            except ValueError:
                return None
            return info.width, info.height
    return None


def _dimensions(packet: av.Packet, codec: str, extradata: bytes) -> tuple[int, int] | None:
    """Width and height of a keyframe, by decoding it (only after a parameter-set change)."""
    import av

    try:
        decoder = av.CodecContext.create(codec, "r")
        decoder.extradata = extradata
        frames = decoder.decode(av.Packet(bytes(packet))) + decoder.decode(None)
    except (av.error.FFmpegError, ValueError):
        return None
    return (frames[0].width, frames[0].height) if frames else None


def parameter_sets(annexb: bytes, codec: str) -> bytes | None:
    """The in-band parameter sets (SPS/PPS, and VPS for H.265) of a keyframe, as Annex B;
    ``codec`` is FFmpeg's name ("h264" or "hevc").

    Some cameras send no sprop-parameter-sets in their SDP; the MP4 header
    still needs them, so they are taken from the keyframe.
    """
    return annexb_parameter_sets(split_annexb(annexb), codec)


def annexb_parameter_sets(nals: Sequence[bytes], codec: str) -> bytes | None:
    """The parameter sets among ``nals`` (one access unit's NAL units) as Annex B, as
    ``parameter_sets`` gives them; ``codec`` is FFmpeg's name."""
    sets = parameter_set_nals("h265" if codec == "hevc" else "h264", list(nals))
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in sets) or None
