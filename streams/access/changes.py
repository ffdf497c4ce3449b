"""``RegistryChanges``: every change to cameras, regions and users, checked against the actor's scope
and audited, whoever asks (an API route or the CLI).

Audit the write, not the caller: the API and ``sharpeyes camera|region|user`` both call this
service, so a change writes its audit row whichever door it came in by. The CLI actor is the
operating-system user (``Actor.os_user()``, recorded as ``cli:NAME`` from ``local``); an API
actor is the signed-in caller with their client address.

Scope rule for a change: both the old and the new place must be inside the actor's scope. A
camera cannot be moved out of (or planted into) another township, and a region cannot be
created under a parent outside the scope, nor as a new root unless the actor sees everything.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any, Sequence

from config.cameras import Camera, Region
from storage.index.registry import Registry, RegistryError
from streams.access.audit import AuditLog
from streams.access.users import ALL_REGIONS, ApiKey, User, UserStore


class OutOfScope(PermissionError):
    """The change reaches outside the actor's region scope (403)."""


class NotInScope(LookupError):
    """The camera does not exist, or not for this actor (404, like an unknown camera)."""


@dataclass(frozen=True)
class Actor:
    """Who makes a change: recorded in its audit row."""

    name: str
    role: str
    client_ip: str
    scope: tuple[str, ...] = (ALL_REGIONS,)

    @classmethod
    def os_user(cls) -> "Actor":
        """The person at the terminal: CLI changes need shell access to the server, which sees all."""
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "?"
        return cls(f"cli:{name}", "admin", "local")

    @property
    def sees_all(self) -> bool:
        return sees_all(self.role, self.scope)

    def region_codes(self, registry: Registry) -> set[str] | None:
        return regions_in_scope(self.role, self.scope, registry)


def sees_all(role: str, scope: tuple[str, ...]) -> bool:
    """Whether a caller with ``role`` and ``scope`` sees every region."""
    return role == "admin" or ALL_REGIONS in scope


def regions_in_scope(role: str, scope: tuple[str, ...], registry: Registry) -> set[str] | None:
    """Every region code in ``scope`` (sub-regions included); None means all."""
    if sees_all(role, scope):
        return None
    codes: set[str] = set()
    for code in scope:
        codes |= registry.region_subtree(code)
    return codes


class RegistryChanges:
    """Scope-checked, audited changes to the registry and the users."""

    def __init__(self, registry: Registry, audit: AuditLog, users: UserStore | None = None) -> None:
        self.registry = registry
        self.audit = audit
        self.users = users

    # -- helpers -------------------------------------------------------------------

    def _record(self, actor: Actor, action: str, *, camera_id: str | None = None, detail: str = "") -> None:
        self.audit.append(user=actor.name, role=actor.role, client_ip=actor.client_ip, action=action,
                          camera_id=camera_id, detail=detail)

    def _check_place(self, actor: Actor, region: str | None, what: str) -> None:
        codes = actor.region_codes(self.registry)
        if codes is None:
            return
        if region is None:
            raise OutOfScope(f"{what}: only a user who sees every region may create a new root region")
        if region not in codes:
            raise OutOfScope(f"{what}: region {region} is outside your scope")

    def visible_camera(self, actor: Actor, camera_id: str) -> Camera:
        camera = self.registry.camera(camera_id)
        codes = actor.region_codes(self.registry)
        if camera is None or (codes is not None and camera.region not in codes):
            raise NotInScope(f"camera {camera_id} is not registered")
        return camera

    # -- cameras and regions -------------------------------------------------------

    def add_camera(self, actor: Actor, camera: Camera) -> Camera:
        self._check_place(actor, camera.region, f"camera {camera.id}")
        self.registry.add_camera(camera)
        self._record(actor, "camera_add", camera_id=camera.id)
        return camera

    def import_cameras(self, actor: Actor, cameras: Sequence[Camera], *, source: str = "") -> int:
        """All of ``cameras`` or none; one audit row for the batch (ids in the detail)."""
        for cam in cameras:
            self._check_place(actor, cam.region, f"camera {cam.id}")
        self.registry.add_cameras(cameras)
        ids = ",".join(c.id for c in cameras)
        detail = f"{len(cameras)} camera(s){' from ' + source if source else ''}: {ids}"
        self._record(actor, "camera_import", detail=detail[:4000])
        return len(cameras)

    def edit_camera(self, actor: Actor, camera_id: str, changes: dict[str, Any]) -> Camera:
        before = self.visible_camera(actor, camera_id)
        new_region = changes.get("region")
        if isinstance(new_region, str) and new_region != before.region:
            self._check_place(actor, new_region, f"camera {camera_id}")
        camera = self.registry.update_camera(camera_id, **changes)
        moved = f" region {before.region}->{camera.region}" if camera.region != before.region else ""
        self._record(actor, "camera_edit", camera_id=camera_id, detail=",".join(sorted(changes)) + moved)
        return camera

    def remove_camera(self, actor: Actor, camera_id: str) -> None:
        self.visible_camera(actor, camera_id)
        self.registry.remove_camera(camera_id)
        self._record(actor, "camera_remove", camera_id=camera_id)

    def add_region(self, actor: Actor, region: Region) -> Region:
        self._check_place(actor, region.parent, f"region {region.code}")
        self.registry.add_region(region)
        self._record(actor, "region_add", detail=f"{region.code} parent={region.parent or '-'}")
        return region

    def edit_motion_settings(self, actor: Actor, camera_id: str) -> None:
        self._record(actor, "camera_edit", camera_id=camera_id, detail="motion-settings")

    # -- users and keys --------------------------------------------------------------

    def _users(self) -> UserStore:
        if self.users is None:
            raise RuntimeError("RegistryChanges was built without a UserStore")
        return self.users

    def add_user(self, actor: Actor, name: str, password: str, role: str, regions: Sequence[str]) -> User:
        user = self._users().add(name, password, role, regions)
        self._record(actor, "user_add", detail=f"target={user.name} role={user.role} regions={','.join(user.scope)}")
        return user

    def passwd(self, actor: Actor, name: str, password: str, *, note: str = "") -> None:
        self._users().passwd(name, password)
        self._record(actor, "user_passwd", detail=f"target={name}{note}")

    def disable(self, actor: Actor, name: str, *, note: str = "") -> None:
        self._users().disable(name)
        self._record(actor, "user_disable", detail=f"target={name}{note}")

    def enable(self, actor: Actor, name: str) -> None:
        self._users().enable(name)
        self._record(actor, "user_enable", detail=f"target={name}")

    def set_role(self, actor: Actor, name: str, role: str, regions: Sequence[str] | None, *, note: str = "") -> User:
        user = self._users().set_role(name, role, regions)
        self._record(actor, "user_role", detail=f"target={name} role={user.role} regions={','.join(user.scope)}{note}")
        return user

    def create_key(self, actor: Actor, name: str, role: str, regions: Sequence[str],
                   expires_days: int) -> tuple[str, ApiKey]:
        key, facts = self._users().create_api_key(name, role, regions, created_by=actor.name,
                                                  expires_days=expires_days)
        self._record(actor, "key_create", detail=f"key={facts.id} name={facts.name} role={facts.role}")
        return key, facts

    def revoke_key(self, actor: Actor, key_id: int) -> ApiKey:
        facts = self._users().revoke_api_key(key_id)
        self._record(actor, "key_revoke", detail=f"key={facts.id} name={facts.name}")
        return facts


__all__ = ["Actor", "NotInScope", "OutOfScope", "RegistryChanges", "RegistryError"]
