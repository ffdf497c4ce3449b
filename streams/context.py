"""``AppContext``: what the HTTP app is given by the process that runs it.

Every field is typed and built once, when the context is made (``sharpeyes.process``
for a real process, the fixtures in tests). Services that need only the index's
engine are built from it here, so a test that gives settings, index, registry and
store gets a working app; the ones that exist only where cameras are recorded
(``supervisor``, ``media``, ``retention``) are None on a pure API node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from config.settings import Settings
from storage.archive.holds import HoldStore
from storage.archive.plan_cache import PlanCache
from storage.evidence.exports import ExportService
from storage.index.media import MediaIndex
from storage.index.registry import Registry
from storage.index.segments import SegmentIndex
from storage.objects.store import ObjectStore
from streams.access.live_sessions import LiveSessions

if TYPE_CHECKING:  # annotations only: these modules import this one
    from ingest.gb28181.service import GbServer
    from ingest.media.pipelines import MediaPipelines
    from ingest.supervisor import Supervisor
    from storage.archive.retention import RetentionCleaner as Retention
    from streams.access.guard import AuthState
    from streams.live.hls import HlsPackager
    from streams.live.mse import MseMuxer
    from streams.live.webrtc import WhepSession


@dataclass(eq=False)
class LiveViews:
    """The live sessions one app serves, by kind. The routes in ``streams.live`` add and
    remove entries; the app's shutdown closes them all."""

    whep: dict[str, WhepSession] = field(default_factory=dict)
    mse: dict[tuple[str, str], MseMuxer] = field(default_factory=dict)
    hls: dict[tuple[str, str], HlsPackager] = field(default_factory=dict)


@dataclass(eq=False)
class AppContext:
    settings: Settings
    index: SegmentIndex
    registry: Registry
    store: ObjectStore
    # The in-process ingest supervisor when this process records cameras (``run``,
    # ``ingest``); None on a pure API node.
    supervisor: Supervisor | None = None
    # Snapshots, motion and transcode taps of the recorded cameras (None: no ingest here).
    media: MediaPipelines | None = None
    retention: Retention | None = None
    # The GB/T 28181 SIP server when this process runs it (GB_SIP_BIND set); None elsewhere.
    gb: GbServer | None = None
    # None: ``install_auth`` builds it from the settings; tests give one with their own clocks.
    auth: AuthState | None = None
    clip_plans: PlanCache = field(default_factory=PlanCache)
    live: LiveViews = field(default_factory=LiveViews)
    # Every live view of every kind with its user, re-authorized every second: a disabled
    # user's or an expired credential's views end (``streams.access.live_sessions``).
    live_sessions: LiveSessions = field(default_factory=LiveSessions)
    media_index: MediaIndex = field(init=False)
    holds: HoldStore = field(init=False)
    exports: ExportService = field(init=False)

    def __post_init__(self) -> None:
        engine = self.index.engine
        self.media_index = MediaIndex(engine)
        self.holds = HoldStore(engine)
        self.exports = ExportService(engine, self.index, self.registry, self.store, self.settings.data_dir,
                                     max_seconds=self.settings.export_max_seconds)
