"""What the HTTP app is given by the process that runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from config.settings import Settings
from storage.index.segments import SegmentIndex
from storage.objects.store import ObjectStore
from storage.index.registry import Registry


@dataclass
class AppContext:
    settings: Settings
    index: SegmentIndex
    registry: Registry
    store: ObjectStore
    # The in-process ingest supervisor (``ingest.supervisor.Supervisor``) when this
    # process records cameras (``run``, ``ingest``); None on a pure API node.
    supervisor: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
