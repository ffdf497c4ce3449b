"""A worker restarted under the same id takes its cameras back at once, with the same epoch."""

from __future__ import annotations

from sqlalchemy import Engine

from config.cameras import Camera, Region
from ingest.cluster.lease_keeper import LeaseKeeper
from storage import LeaseTable, Registry

S = 1_000_000
T0 = 1_800_000_000 * S


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


class Reconciles:
    """Counts the keeper's calls into the supervisor (it is not what is under test)."""

    def __init__(self) -> None:
        self.forced = 0

    def reconcile(self, force: bool = False) -> None:
        self.forced += int(force)

    def statuses(self) -> list:
        return []

    spool = None


def test_restart_takes_back_own_leases_without_waiting_for_the_ttl(index_engine: Engine) -> None:
    registry = Registry(index_engine)
    registry.add_region(Region(code="r", name="R"))
    registry.add_cameras([Camera(id=f"cam-{i}", name="c", region="r", main_url="rtsp://h/x") for i in range(3)])
    table = LeaseTable(index_engine)
    table.ensure([f"cam-{i}" for i in range(3)])
    before = table.acquire("w1", [f"cam-{i}" for i in range(3)], 3, now_us=T0, ttl_us=15 * S)
    clock = Clock()
    clock.now = T0 + 2 * S  # killed and restarted two seconds later: the leases are still valid
    keeper = LeaseKeeper(table, registry, "w1", ttl_seconds=15, clock=clock)
    supervisor = Reconciles()
    keeper.attach(supervisor)  # type: ignore[arg-type]
    keeper._reclaim_own(clock.now)
    assert keeper.held() == before, "same cameras, same epochs: recovered segments still index"
    assert supervisor.forced == 1
    other = LeaseKeeper(table, registry, "w2", ttl_seconds=15, clock=clock)
    other._reclaim_own(clock.now)
    assert other.held() == {}, "only the worker's own leases come back"
