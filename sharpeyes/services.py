"""The shared objects a process opens once from its settings: index, registry, object store."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import typer
from sqlalchemy import Engine

from config.settings import Settings
from storage.db.engine import open_engine
from storage.index.segments import SegmentIndex
from storage.objects.store import ObjectStore
from storage.index.registry import Registry
from storage.index.credentials import SecretCipher, load_cipher

if TYPE_CHECKING:
    from streams.access.changes import RegistryChanges


@dataclass
class Services:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return open_engine(self.settings.database_url)

    @cached_property
    def index(self) -> SegmentIndex:
        return SegmentIndex(self.engine)

    @cached_property
    def cipher(self) -> SecretCipher:
        return load_cipher(self.settings.data_dir)

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.engine, self.cipher)

    @cached_property
    def changes(self) -> "RegistryChanges":
        """Audited registry and user changes (the CLI's actor is ``Actor.os_user()``)."""
        from streams.access.audit import AuditLog
        from streams.access.changes import RegistryChanges
        from streams.access.users import UserStore

        return RegistryChanges(self.registry, AuditLog(self.engine), UserStore(self.engine))

    @cached_property
    def store(self) -> ObjectStore:
        from storage.objects.open import open_object_store

        return open_object_store(self.settings)


    def lease_keeper(self):  # type: ignore[no-untyped-def]
        """This worker's ``ingest.cluster.lease_keeper.LeaseKeeper`` over the index (``use_leases``)."""
        from ingest.cluster.lease_keeper import LeaseKeeper
        from storage.index.camera_status import CameraStatusTable
        from storage.index.leases import LeaseTable

        return LeaseKeeper.from_settings(self.settings, LeaseTable(self.engine), self.registry,
                                         CameraStatusTable(self.engine))


class LazyServices:
    """What the CLI keeps in ``typer.Context.obj``: settings are read when a command
    first needs them, so ``--help`` works even with a broken config."""

    def __init__(self) -> None:
        self._services: Services | None = None

    def get(self) -> Services:
        if self._services is None:
            self._services = Services(Settings())
        return self._services


def from_context(ctx: typer.Context) -> Services:
    """The process services of a CLI command (see ``sharpeyes.cli.main``)."""
    obj = ctx.find_root().obj
    if isinstance(obj, Services):
        return obj
    if isinstance(obj, LazyServices):
        return obj.get()
    raise RuntimeError("the sharpeyes CLI must put LazyServices or Services in ctx.obj")
