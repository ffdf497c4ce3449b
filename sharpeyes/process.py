"""Running a sharpeyes process: the ingest supervisor and the HTTP server, and a clean stop."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Iterator

import uvicorn

from config.settings import Settings
from ingest.cluster.lease_keeper import exit_process
from sharpeyes.services import Services
from config.times import now_us
from storage.archive.retention import RetentionCleaner, RetentionPolicy, disk_free
from streams.access.users import UserStore, ensure_first_admin
from streams.app import create_app
from streams.context import AppContext

if TYPE_CHECKING:
    from ingest.cluster.lease_keeper import LeaseKeeper
    from ingest.gb28181.service import GbServer

log = logging.getLogger("sharpeyes")


def run_process(svc: Services, *, http_bind: str | None, ingest: bool, serve: bool) -> None:
    """Run until SIGINT/SIGTERM. On the way out, open segments are closed and
    uploaded for up to ``shutdown_timeout_seconds``; what is left stays in the
    spool and is uploaded by the next start."""
    settings = svc.settings
    bind = http_bind or settings.http_bind
    if serve:
        password = ensure_first_admin(UserStore(svc.engine), "SHARPEYES_ADMIN_PASSWORD")
        if password is not None:
            # Printed once, never logged: only its hash is stored.
            print(f"\nFirst admin created: user 'admin', password {password}\n"
                  "Change it with 'sharpeyes user passwd admin'.\n", flush=True)
    ctx = AppContext(settings=settings, index=svc.index, registry=svc.registry, store=svc.store)
    keeper: LeaseKeeper | None = None
    cascade = None
    if ingest:
        from ingest.media.pipelines import MediaPipelines
        from ingest.supervisor import Supervisor

        pipelines = ctx.media = MediaPipelines(settings, ctx.media_index, clock=now_us)
        if settings.use_leases:
            keeper = svc.lease_keeper()
            keeper.on_usurped = exit_process
            keeper.register()  # refuses to start when another live process has this worker id
        factory = None
        if settings.gb_sip_bind:
            ctx.gb = start_gb_server(svc)
            factory = gb_session_factory(settings, ctx.gb)
        parts = (settings, svc.registry, svc.index, svc.store)
        supervisor = ctx.supervisor = (
            Supervisor(*parts, attach=pipelines.attach, owns=keeper.owns, fence=keeper.fence,
                       session_factory=factory) if keeper is not None
            else Supervisor(*parts, attach=pipelines.attach, session_factory=factory))
        if keeper is not None:
            keeper.attach(supervisor)
        supervisor.start()
        if ctx.gb is not None:
            cascade = start_cascade(svc, ctx.gb, supervisor)
        if keeper is not None:
            keeper.start()
            log.info("worker %s: sharing cameras by lease (TTL %.0f s)", settings.worker_id, settings.lease_ttl_seconds)
        log.info("recording %d camera stream(s); spool %s", len(supervisor.sessions), supervisor.spool.root)
        ctx.retention = RetentionCleaner(svc.index, svc.store, svc.registry.cameras, clock=now_us,
                                         policy=retention_policy(settings), region_of=svc.registry.region_subtree,
                                         free_bytes=store_free_bytes(settings),
                                         interval_seconds=settings.retention_interval_seconds)
        ctx.retention.start()
    app = create_app(ctx)
    if ctx.supervisor is not None:
        from streams.live.restream import install_restream

        install_restream(app, ctx.supervisor.live, settings.rtsp_bind)
        log.info("RTSP restream on rtsp://%s/{camera_id}[/sub]", settings.rtsp_bind)
    server = _Server(http_config(app, settings, bind))
    log.info("%s on %s://%s", "HTTPS" if settings.tls_cert else "HTTP", "https" if settings.tls_cert else "http", bind)
    try:
        server.run()
    finally:
        if ctx.retention is not None:
            ctx.retention.close()
        if keeper is not None:
            keeper.drain()  # keep the leases valid while the last segments are indexed
        if ctx.supervisor is not None:
            log.info("stopping: closing open segments and uploading (up to %.0f s)", settings.shutdown_timeout_seconds)
            left = ctx.supervisor.close()
            if left:
                log.warning("%d segment(s) wait in the spool; they upload on the next start", left)
            else:
                log.info("spool drained; stopped cleanly")
        if keeper is not None:
            keeper.stop()
        if ctx.gb is not None:
            if cascade is not None:
                ctx.gb.call(cascade.close()).result(10)
            ctx.gb.close()  # after the supervisor: its sessions sent their BYEs through it


def start_gb_server(svc: Services) -> GbServer:
    """The GB/T 28181 SIP server (devices register, keep alive, answer queries) on its own loop thread."""
    from ingest.gb28181.service import GbServer, GbService
    from storage.index.gb_devices import GbDeviceStore
    from streams.access.audit import AuditLog

    settings = svc.settings
    audit_log = AuditLog(svc.engine)

    def audit(action: str, outcome: str, device_id: str, client_ip: str, detail: str) -> None:
        audit_log.append(user=f"gb:{device_id}", role="device", client_ip=client_ip, action=action, outcome=outcome,
                         detail=detail)

    server = GbServer(GbService(settings, svc.registry, GbDeviceStore(svc.engine, svc.cipher), audit=audit))
    server.start()
    log.info("GB/T 28181: SIP server %s on %s (udp+tcp), media on %s ports %s", settings.gb_id,
             settings.gb_sip_bind, settings.gb_media_host or settings.gb_sip_bind.rpartition(":")[0],
             settings.gb_rtp_ports)
    return server


def start_cascade(svc: Services, server: GbServer, supervisor: object):  # type: ignore[no-untyped-def]
    """The cascade to the upper platforms of ``gb upstream add`` (REGISTER, Catalog, live and
    archive playback INVITEs), on the GB server's loop; each cascade session is audited."""
    from ingest.gb28181.media.session import media_link
    from storage.index.gb_upstreams import UpstreamStore
    from streams.access.audit import AuditLog
    from streams.cascade.service import CascadeService

    settings = svc.settings
    audit_log = AuditLog(svc.engine)

    def audit(upstream: str, outcome: str, camera_id: str, detail: str) -> None:
        audit_log.append(user=f"gb:{upstream}", role="platform", client_ip="", action="gb_cascade", outcome=outcome,
                         camera_id=camera_id or None, detail=detail)

    link = media_link(settings, server)
    cascade = CascadeService(server.service.endpoint, UpstreamStore(svc.engine, svc.cipher), svc.registry,
                             supervisor.live, settings.gb_id, link.media_host, link.ports,  # type: ignore[attr-defined]
                             audit=audit, bind_host=link.bind_host, index=svc.index, objects=svc.store,
                             timezone=settings.display_timezone)

    async def start() -> None:
        cascade.start(server.service.message_routes)

    server.call(start()).result(10)
    return cascade


def gb_session_factory(settings: Settings, server: GbServer):  # type: ignore[no-untyped-def]
    """The supervisor's sessions for GB/T 28181 channel cameras: INVITE through ``server``
    (the one ``GbLink`` of the server, shared with backfill)."""
    from ingest.gb28181.media.session import gb_session_factory as factory, media_link

    return factory(media_link(settings, server), lambda cam: cam.gb_device_id if cam.source == "gb28181" else None)


def http_config(app: object, settings: Settings, bind: str) -> uvicorn.Config:
    """uvicorn's settings for the API: HTTPS when a certificate is configured."""
    host, _, port = bind.rpartition(":")
    tls = settings.tls_cert is not None and settings.tls_key is not None
    # No permessage-deflate: live fMP4 does not compress, and deflating every fragment for
    # every MSE viewer cost more CPU than the rest of the viewer (tests/bench/live.py).
    return uvicorn.Config(app, host=host, port=int(port), proxy_headers=True,  # type: ignore[arg-type]
                          forwarded_allow_ips=settings.forwarded_allow_ips, log_config=None, access_log=False,
                          ws_per_message_deflate=False,
                          ssl_certfile=str(settings.tls_cert) if tls else None,
                          ssl_keyfile=str(settings.tls_key) if tls else None)


def retention_policy(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy(
        camera_quota_bytes=settings.retention_camera_quota_bytes,
        region_quota_bytes=dict(settings.retention_region_quota_bytes),
        min_free_bytes=settings.retention_min_free_bytes,
        index_only=settings.retention_index_only,
    )


def store_free_bytes(settings: Settings):  # type: ignore[no-untyped-def]
    """The low-space guard's probe: only for the local store (S3 has no free-space notion)."""
    if settings.uses_s3 or settings.objects_dir is None:
        return None
    settings.objects_dir.mkdir(parents=True, exist_ok=True)
    return disk_free(settings.objects_dir)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its own shutdown, which would kill the process
    before the open segments are closed and uploaded; here a signal only asks the
    HTTP server to stop, and ``run_process`` does the rest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def ask_exit(signum: int, _frame: object) -> None:
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True

        previous = {sig: signal.signal(sig, ask_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
