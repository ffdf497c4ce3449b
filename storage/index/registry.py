"""``Registry``: the cameras and regions operators register, stored in the index database.

Every write validates through ``config.Camera``/``config.Region`` first and
checks references (the region exists, the id is new) inside one transaction, so
a bad row or a bad batch writes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from pydantic import ValidationError
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from config.cameras import Camera, Region
from config.times import now_us
from storage.db.engine import single_statements
from storage.db.schema import CameraRow, RegionRow, RegistryStateRow

if TYPE_CHECKING:
    from storage.index.credentials import SecretCipher


class RegistryError(ValueError):
    """A registry change that was refused; nothing was written."""


class Registry:
    """Cameras and regions. With a ``cipher``, URLs that carry credentials are
    stored encrypted and decrypted on read; callers always see plain ``Camera``s.
    """

    def __init__(self, engine: Engine, cipher: SecretCipher | None = None):
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._one = single_statements(engine)
        self._cipher = cipher

    def _stored(self, camera: Camera) -> dict[str, object]:
        """Column values for ``camera``, with URLs sealed when there is a cipher."""
        values = camera.model_dump()
        if self._cipher is not None:
            values["main_url"] = self._cipher.seal_url(camera.main_url)
            values["sub_url"] = self._cipher.seal_url(camera.sub_url)
        return values

    def _camera(self, row: CameraRow) -> Camera:
        return _camera(row, self._cipher)

    # -- regions --------------------------------------------------------------

    def add_region(self, region: Region) -> None:
        with self._sessions() as s, s.begin():
            if s.get(RegionRow, region.code) is not None:
                raise RegistryError(f"region {region.code} already exists")
            if region.parent is not None and s.get(RegionRow, region.parent) is None:
                raise RegistryError(f"region {region.code}: parent region {region.parent} does not exist; add it first")
            s.add(RegionRow(code=region.code, name=region.name, parent=region.parent))

    def regions(self) -> list[Region]:
        with self._sessions() as s:
            rows = s.scalars(select(RegionRow).order_by(RegionRow.code))
            return [Region(code=r.code, name=r.name, parent=r.parent) for r in rows]

    def region_subtree(self, code: str) -> set[str]:
        """``code`` and every region below it."""
        children: dict[str | None, list[str]] = {}
        for r in self.regions():
            children.setdefault(r.parent, []).append(r.code)
        out, todo = set(), [code]
        while todo:
            c = todo.pop()
            if c not in out:
                out.add(c)
                todo.extend(children.get(c, []))
        return out

    # -- cameras --------------------------------------------------------------

    def add_cameras(self, cameras: Iterable[Camera]) -> None:
        """Add all of ``cameras`` or none of them."""
        cameras = list(cameras)
        with self._sessions() as s, s.begin():
            errors = []
            regions = set(s.scalars(select(RegionRow.code)))
            existing = set(s.scalars(select(CameraRow.id).where(CameraRow.id.in_([c.id for c in cameras]))))
            batch: set[str] = set()
            for cam in cameras:
                if cam.id in existing:
                    errors.append(f"camera {cam.id}: id already registered; use 'camera edit' to change it")
                elif cam.id in batch:
                    # Caught here, not by the primary key at commit, so the operator gets
                    # a RegistryError naming the row instead of a database error.
                    errors.append(f"camera {cam.id}: id appears more than once in this batch")
                batch.add(cam.id)
                if cam.region not in regions:
                    errors.append(f"camera {cam.id}: region {cam.region} does not exist; add it with 'region add'")
            if errors:
                raise RegistryError("\n".join(errors))
            stamp = now_us()
            for cam in cameras:
                s.add(CameraRow(**self._stored(cam), updated_us=stamp))
            _count_change(s)

    def add_camera(self, camera: Camera) -> None:
        self.add_cameras([camera])

    def update_camera(self, camera_id: str, **changes: object) -> Camera:
        """Apply field changes; the result is validated as a whole before it is written."""
        with self._sessions() as s, s.begin():
            row = s.get(CameraRow, camera_id)
            if row is None:
                raise RegistryError(f"camera {camera_id} is not registered")
            current = self._camera(row).model_dump()
            if "id" in changes and changes["id"] != camera_id:
                raise RegistryError(f"camera {camera_id}: the id cannot be changed; remove and add instead")
            try:
                updated = Camera.model_validate({**current, **changes})
            except ValidationError as exc:
                # One error type for every refused change, so API and CLI callers
                # need not know about pydantic.
                raise RegistryError(f"camera {camera_id}: {_validation_message(exc)}") from None
            if updated.region != row.region and s.get(RegionRow, updated.region) is None:
                raise RegistryError(f"camera {camera_id}: region {updated.region} does not exist")
            for key, value in self._stored(updated).items():
                setattr(row, key, value)
            row.updated_us = max(now_us(), row.updated_us + 1)
            _count_change(s)
            return updated

    def remove_camera(self, camera_id: str) -> None:
        with self._sessions() as s, s.begin():
            row = s.get(CameraRow, camera_id)
            if row is None:
                raise RegistryError(f"camera {camera_id} is not registered")
            s.delete(row)
            _count_change(s)

    def camera(self, camera_id: str) -> Camera | None:
        with self._sessions() as s:
            row = s.get(CameraRow, camera_id)
            return None if row is None else self._camera(row)

    def cameras(self, region: str | None = None) -> list[Camera]:
        with self._sessions() as s:
            q = select(CameraRow).order_by(CameraRow.id)
            if region is not None:
                q = q.where(CameraRow.region.in_(self.region_subtree(region)))
            return [self._camera(r) for r in s.scalars(q)]

    def version(self) -> tuple[int, int]:
        """(camera count, change counter): differs after every committed camera add, edit
        or removal, and never returns to an earlier value. Cheap enough to poll."""
        # One autocommit read: every worker polls this every lease round.
        with self._one.connect() as c:
            count, changes = c.execute(select(
                select(func.count()).select_from(CameraRow).scalar_subquery(),
                select(RegistryStateRow.changes).where(RegistryStateRow.id == 1).scalar_subquery())).one()
        return int(count or 0), int(changes or 0)  # type: ignore[call-overload]


def _count_change(s: Session) -> None:
    """Bump the change counter inside the caller's transaction (the row lock also
    orders concurrent registry writers on PostgreSQL)."""
    bumped = s.execute(update(RegistryStateRow).where(RegistryStateRow.id == 1).values(changes=RegistryStateRow.changes + 1))
    if bumped.rowcount == 0:  # type: ignore[attr-defined]
        s.add(RegistryStateRow(id=1, changes=1))


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "camera"
        parts.append(f"{field}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def _camera(row: CameraRow, cipher: SecretCipher | None = None) -> Camera:
    main_url, sub_url = row.main_url, row.sub_url
    if cipher is not None:
        main_url = cipher.decrypt(main_url)
        sub_url = None if sub_url is None else cipher.decrypt(sub_url)
    return Camera(
        id=row.id,
        name=row.name,
        region=row.region,
        main_url=main_url,
        sub_url=sub_url,
        enabled=row.enabled,
        retention_days=row.retention_days,
        retention_override=bool(row.retention_override),
        transcode=row.transcode,  # type: ignore[arg-type]
        rtsp_transport=row.rtsp_transport,  # type: ignore[arg-type]
        puller=row.puller,  # type: ignore[arg-type]
        source=row.source or "rtsp",  # type: ignore[arg-type]
        gb_device_id=row.gb_device_id,
        gb_civil_code=row.gb_civil_code,
    )
