"""``GET /metrics`` (Prometheus text) and ``GET /api/health`` (the console's fleet view).

The numbers are read at scrape time by a custom collector, from the sessions'
status, the spool, the uploader and the index: nothing on the recording path
updates a gauge. Labels are camera ids, stream names, region codes and the
worker id, never URLs, so no camera password can reach a label.

``/metrics`` is opt-in: a Prometheus server scrapes it from an address listed in
``metrics_allow_ips``, or with an operator/admin API key as a Bearer token
(``docs/security.md``). Any other caller gets 401. A caller whose scope is one
township sees that township's cameras only, here and in ``/api/health``.
"""

from __future__ import annotations

from typing import Any, Iterator

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ingest.health.fleet import HOUR_US, fleet_health
from storage.index.coverage import fleet_coverage
from config.times import now_us
from streams.access.guard import Principal, allow, allow_scrape
from streams.context import AppContext

router = APIRouter()


def _stale_us(ctx: AppContext) -> int:
    # A recording camera's newest segment is at most one segment old, plus upload time.
    return int((2 * ctx.settings.segment_target_seconds + 60) * 1_000_000)


class SharpeyesCollector:
    """Reads the current state of one process at every scrape."""

    def __init__(self, ctx: AppContext, region_codes: set[str] | None = None):
        self.ctx = ctx
        self.region_codes = region_codes  # None: every camera

    def collect(self) -> Iterator[Metric]:
        ctx = self.ctx
        sup = ctx.supervisor
        now = now_us()
        codes = self.region_codes
        cams = {c.id: c for c in ctx.registry.cameras() if codes is None or c.region in codes}
        up = GaugeMetricFamily("sharpeyes_camera_up", "1 while the camera stream is being recorded.",
                               labels=["camera", "stream", "region"])
        fps = GaugeMetricFamily("sharpeyes_camera_fps", "Frames per second received.", labels=["camera", "stream"])
        bitrate = GaugeMetricFamily("sharpeyes_camera_bitrate_bps", "Bits per second received.",
                                    labels=["camera", "stream"])
        reconnects = CounterMetricFamily("sharpeyes_camera_reconnects", "Reconnections since the process started.",
                                         labels=["camera", "stream"])
        errors = CounterMetricFamily("sharpeyes_camera_errors", "Corrupt or refused packets.",
                                     labels=["camera", "stream"])
        if sup is not None:
            for s in sup.statuses():
                if s.camera_id not in cams:
                    continue
                region = cams[s.camera_id].region if s.camera_id in cams else ""
                up.add_metric([s.camera_id, s.stream, region], 1.0 if s.state == "recording" else 0.0)
                fps.add_metric([s.camera_id, s.stream], s.fps)
                bitrate.add_metric([s.camera_id, s.stream], s.bitrate_bps)
                reconnects.add_metric([s.camera_id, s.stream], s.reconnects)
                errors.add_metric([s.camera_id, s.stream], s.errors)
        yield from (up, fps, bitrate, reconnects, errors)

        coverage = GaugeMetricFamily("sharpeyes_camera_coverage_ratio",
                                     "Recorded time over wall time in the last hour, from the index.",
                                     labels=["camera", "stream", "region"])
        gaps = GaugeMetricFamily("sharpeyes_camera_gaps_last_hour", "Gap rows overlapping the last hour.",
                                 labels=["camera", "stream"])
        gap_open = GaugeMetricFamily("sharpeyes_camera_gap_open", "1 while a gap is open, labelled with its reason.",
                                     labels=["camera", "stream", "reason"])
        for (cam, stream), c in sorted(fleet_coverage(ctx.index, now - HOUR_US, now).items()):
            if cam not in cams:
                continue  # removed cameras keep their rows but are nobody's alert
            coverage.add_metric([cam, stream, cams[cam].region], c.ratio(HOUR_US))
            gaps.add_metric([cam, stream], c.gaps)
            if c.open_gap_reason is not None:
                gap_open.add_metric([cam, stream, c.open_gap_reason], 1.0)
        yield from (coverage, gaps, gap_open)

        cleaner = ctx.retention
        if cleaner is not None:
            deleted = CounterMetricFamily("sharpeyes_retention_deleted_segments",
                                          "Segments deleted by retention, by rule.", labels=["rule"])
            for rule in ("age", "camera_quota", "region_quota", "low_space"):
                deleted.add_metric([rule], cleaner.total.by_rule.get(rule, 0))
            yield deleted
            yield CounterMetricFamily("sharpeyes_retention_deleted_bytes", "Bytes deleted by retention.",
                                      value=cleaner.total.deleted_bytes)
            yield CounterMetricFamily("sharpeyes_retention_held_skipped",
                                      "Times a segment due for deletion was kept by a legal hold.",
                                      value=cleaner.total.held_skipped)
        if sup is None:
            return
        w = [ctx.settings.worker_id]
        st = sup.worker_stats()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=["worker"])
            g.add_metric(w, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=["worker"])
            c.add_metric(w, value)
            return c

        yield gauge("sharpeyes_spool_backlog_bytes", "Bytes of closed segments waiting for upload.", st["spool_backlog_bytes"])
        yield gauge("sharpeyes_spool_backlog_segments", "Closed segments waiting for upload.", st["spool_backlog_segments"])
        yield gauge("sharpeyes_spool_bytes", "Bytes in the spool, open segments included.", st["spool_bytes"])
        yield gauge("sharpeyes_spool_quota_bytes", "The spool quota.", st["spool_quota_bytes"])
        yield counter("sharpeyes_uploads", "Segments uploaded and indexed.", st["uploads"])
        yield counter("sharpeyes_upload_failures", "Failed upload attempts (the segment stays in the spool).",
                      st["upload_failures"])
        yield counter("sharpeyes_upload_latency_seconds_sum", "Total time spent uploading segments.",
                      st["upload_latency_seconds_sum"])
        yield gauge("sharpeyes_upload_last_latency_seconds", "Time the last upload took.",
                    st["upload_last_latency_seconds"])
        yield gauge("sharpeyes_store_available", "1 when the last upload attempt reached the object store.",
                    st["store_available"])
        yield counter("sharpeyes_storage_losses", "Segments dropped or not recorded because the spool was over "
                      "quota (each is a storage_unavailable gap).", st["storage_losses"])
        yield gauge("sharpeyes_leases", "Camera leases held by this worker.", st["leases"])


def install_metrics(app: FastAPI, ctx: AppContext) -> None:
    """Mount ``/metrics`` and ``/api/health`` with a collector registry of this app's own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SharpeyesCollector(ctx))  # type: ignore[arg-type]
    app.state.metrics_registry = registry
    app.include_router(router)


@router.get("/metrics")
def metrics(request: Request, principal: Principal = allow_scrape()) -> Response:
    """Prometheus text: from an address in ``metrics_allow_ips``, or with an operator/admin credential."""
    codes = principal.region_codes(request.app.state.ctx.registry)
    if codes is None:
        return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
    scoped = CollectorRegistry(auto_describe=False)
    scoped.register(SharpeyesCollector(request.app.state.ctx, codes))  # type: ignore[arg-type]
    return Response(generate_latest(scoped), media_type=CONTENT_TYPE_LATEST)


def health_snapshot(ctx: AppContext, region_codes: set[str] | None = None) -> dict[str, Any]:
    """What ``/api/health`` answers: fleet online rate vs target, coverage per region, spool."""
    sup = ctx.supervisor
    spool: dict[str, Any] = {}
    if sup is not None:
        st = sup.worker_stats()
        spool = {k: st[k] for k in ("spool_backlog_bytes", "spool_backlog_segments", "spool_bytes",
                                    "spool_quota_bytes", "store_available", "storage_losses")}
    return fleet_health(
        ctx.registry, ctx.index, now_us=now_us(), target=ctx.settings.health_online_target,
        stale_us=_stale_us(ctx), statuses=sup.statuses() if sup is not None else None, spool=spool,
        region_codes=region_codes,
    ).as_dict()


@router.get("/api/health")
def health(request: Request, principal: Principal = allow("operator", camera_param=None)) -> dict[str, Any]:
    """Fleet online rate, coverage per region, spool: of the cameras and regions in the caller's scope."""
    ctx = request.app.state.ctx
    return health_snapshot(ctx, principal.region_codes(ctx.registry))
