"""Running a sharpeyes process: the ingest supervisor and the HTTP server, and a clean stop."""

from __future__ import annotations

import contextlib
import logging
import signal
from typing import Iterator

import uvicorn

from config.settings import Settings
from ingest.cluster.lease_keeper import exit_process
from sharpeyes.services import Services
from storage.index.segments import now_us
from storage.archive.retention import RetentionCleaner, RetentionPolicy, disk_free
from streams.access.users import UserStore, ensure_first_admin
from streams.app import create_app
from streams.context import AppContext

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
    supervisor = None
    extras: dict = {}
    keeper = None
    cleaner = None
    if ingest:
        from ingest.media.pipelines import MediaPipelines
        from ingest.supervisor import Supervisor
        from storage.index.media import MediaIndex

        media_index = MediaIndex(svc.engine)
        pipelines = MediaPipelines(settings, media_index, clock=now_us)
        extras = {"media": pipelines, "media_index": media_index}
        lease_hooks = {}
        if settings.use_leases:
            keeper = svc.lease_keeper()
            keeper.on_usurped = exit_process
            keeper.register()  # refuses to start when another live process has this worker id
            lease_hooks = {"owns": keeper.owns, "fence": keeper.fence}
        supervisor = Supervisor(settings, svc.registry, svc.index, svc.store, attach=pipelines.attach, **lease_hooks)
        if keeper is not None:
            keeper.attach(supervisor)
        supervisor.start()
        if keeper is not None:
            keeper.start()
            log.info("worker %s: sharing cameras by lease (TTL %.0f s)", settings.worker_id, settings.lease_ttl_seconds)
        log.info("recording %d camera stream(s); spool %s", len(supervisor.sessions), supervisor.spool.root)
        cleaner = RetentionCleaner(svc.index, svc.store, svc.registry.cameras, clock=now_us,
                                   policy=retention_policy(settings), region_of=svc.registry.region_subtree,
                                   free_bytes=store_free_bytes(settings),
                                   interval_seconds=settings.retention_interval_seconds)
        cleaner.start()
        extras["retention"] = cleaner
    ctx = AppContext(settings=settings, index=svc.index, registry=svc.registry, store=svc.store, supervisor=supervisor,
                     extras=extras)
    app = create_app(ctx)
    if supervisor is not None:
        from streams.live.restream import install_restream

        install_restream(app, supervisor.live, settings.rtsp_bind)
        log.info("RTSP restream on rtsp://%s/{camera_id}[/sub]", settings.rtsp_bind)
    server = _Server(http_config(app, settings, bind))
    log.info("%s on %s://%s", "HTTPS" if settings.tls_cert else "HTTP", "https" if settings.tls_cert else "http", bind)
    try:
        server.run()
    finally:
        if cleaner is not None:
            cleaner.close()
        if keeper is not None:
            keeper.drain()  # keep the leases valid while the last segments are indexed
        if supervisor is not None:
            log.info("stopping: closing open segments and uploading (up to %.0f s)", settings.shutdown_timeout_seconds)
            left = supervisor.close()
            if left:
                log.warning("%d segment(s) wait in the spool; they upload on the next start", left)
            else:
                log.info("spool drained; stopped cleanly")
        if keeper is not None:
            keeper.stop()


def http_config(app: object, settings: Settings, bind: str) -> uvicorn.Config:
    """uvicorn's settings for the API: HTTPS when a certificate is configured."""
    host, _, port = bind.rpartition(":")
    tls = {}
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    # No permessage-deflate: live fMP4 does not compress, and deflating every fragment for
    # every MSE viewer cost more CPU than the rest of the viewer (tests/bench/live.py).
    return uvicorn.Config(app, host=host, port=int(port), proxy_headers=True,  # type: ignore[arg-type]
                          forwarded_allow_ips=settings.forwarded_allow_ips, log_config=None, access_log=False,
                          ws_per_message_deflate=False, **tls)


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
