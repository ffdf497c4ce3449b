"""Which worker holds a camera's live feed, for API nodes that redirect or proxy to it."""

from __future__ import annotations

from storage.index import now_us
from storage.leases import LeaseTable
from streams.context import AppContext


def owner_base_url(ctx: AppContext, camera_id: str) -> str | None:
    """The HTTP base URL (``advertise_url``) of the ingest worker that holds
    ``camera_id``'s lease now, e.g. ``http://10.0.3.7:8080``; None when no live
    worker holds it or the holder advertised no URL.

    A process that records the camera itself (``ctx.supervisor.session(camera_id)``
    is not None) should serve the feed locally rather than call this.
    """
    return LeaseTable(ctx.index.engine).owner_url(camera_id, now_us=now_us())
