"""An in-process recorder (the real ``Supervisor``) for tests: settings, registry, store, index.

    rec = Recorder.start(tmp_path, {"cam-1": url}, segment_target_seconds=4, s3=s3_server, bucket=b)
    ...
    rec.close()            # closes open segments, uploads, returns what is left in the spool
    rec.index.segments("cam-1")
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from config.cameras import Camera, Region
from config.settings import Settings
from ingest.supervisor import Supervisor
from sharpeyes.services import Services
from tests.support.databases import process_database_url


@dataclass
class Recorder:
    services: Services
    supervisor: Supervisor

    @property
    def index(self):  # type: ignore[no-untyped-def]
        return self.services.index

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.services.store

    @property
    def registry(self):  # type: ignore[no-untyped-def]
        return self.services.registry

    @classmethod
    def start(cls, data_dir: Path, cameras: dict[str, str | dict[str, Any]], *, s3: Any = None,
              bucket: str | None = None, database_url: str | None = None, **settings: Any) -> "Recorder":
        """Register ``cameras`` (id -> main URL, or id -> Camera fields) under region "r"
        and start recording them."""
        kw: dict[str, Any] = {"data_dir": data_dir, "registry_poll_seconds": 0.5,
                              "connect_timeout_seconds": 5, "stall_timeout_seconds": 5}
        database_url = database_url or process_database_url(data_dir)  # --db=postgresql
        if database_url:
            kw["database_url"] = database_url
        if s3 is not None:
            kw.update(s3_endpoint=s3.endpoint, s3_access_key=s3.access_key, s3_secret_key=s3.secret_key,
                      s3_bucket=bucket or "sharpeyes")
        kw.update(settings)
        svc = Services(Settings(**kw))
        if "r" not in {r.code for r in svc.registry.regions()}:
            svc.registry.add_region(Region(code="r", name="Test region"))
        cams = []
        for cid, spec in cameras.items():
            fields = {"main_url": spec} if isinstance(spec, str) else dict(spec)
            cams.append(Camera(id=cid, name=cid, region="r", **fields))
        if cams:
            svc.registry.add_cameras(cams)
        sup = Supervisor(svc.settings, svc.registry, svc.index, svc.store)
        sup.start()
        return cls(svc, sup)

    def close(self) -> int:
        return self.supervisor.close()

    def status(self, camera_id: str, stream: str = "main") -> dict[str, Any]:
        session = self.supervisor.session(camera_id, stream)  # type: ignore[arg-type]
        return session.status.as_dict() if session else {}

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll ``predicate`` until true; returns the seconds it took, fails the test otherwise."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if predicate():
                return time.monotonic() - t0
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
