"""``LeaseKeeper`` rounds on both back ends: fair shares, the cap, a joining worker, a dead one.

The keepers run their rounds by hand on one injected clock (no threads, no sleeps);
the process-level behaviour is in tests/scale/.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from config.cameras import Camera, Region
from ingest.cluster.lease_keeper import LeaseKeeper
from storage import LeaseTable, Registry

S = 1_000_000
TTL_S = 15.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000 * S

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def world(index_engine: Engine):  # type: ignore[no-untyped-def]
    registry = Registry(index_engine)
    registry.add_region(Region(code="r", name="R"))
    registry.add_cameras([Camera(id=f"c{i}", name=f"c{i}", region="r", main_url=f"rtsp://127.0.0.1/{i}")
                          for i in range(7)])
    return LeaseTable(index_engine), registry, Clock()


def keeper(world, name: str, **kw) -> LeaseKeeper:  # type: ignore[no-untyped-def]
    leases, registry, clock = world
    k = LeaseKeeper(leases, registry, name, ttl_seconds=TTL_S, clock=clock, **kw)
    leases.heartbeat(name, now_us=clock(), capacity=k.max_cameras)  # what start() does
    return k


def settle(keepers: list[LeaseKeeper], rounds: int = 3) -> None:
    for _ in range(rounds):
        for k in keepers:
            k.round()
        keepers[0].clock.now += int(TTL_S / 3 * S)  # type: ignore[attr-defined] # one heartbeat interval


def assert_one_owner_each(keepers: list[LeaseKeeper], total: int) -> None:
    held = [set(k.held()) for k in keepers]
    assert sum(len(h) for h in held) == total
    assert len(set().union(*held)) == total


def test_workers_split_the_cameras_fairly(world) -> None:  # type: ignore[no-untyped-def]
    ks = [keeper(world, "a"), keeper(world, "b")]
    settle(ks)
    assert_one_owner_each(ks, 7)
    assert sorted(len(k.held()) for k in ks) == [3, 4]
    assert all(epoch == 1 for k in ks for epoch in k.held().values())  # no churn: nothing changed hands


def test_a_joining_worker_gets_its_share(world) -> None:  # type: ignore[no-untyped-def]
    ks = [keeper(world, "a"), keeper(world, "b")]
    settle(ks)
    ks.append(keeper(world, "c"))
    settle(ks)
    assert_one_owner_each(ks, 7)
    assert all(2 <= len(k.held()) <= 3 for k in ks), [k.held() for k in ks]


def test_cap_is_respected_and_the_rest_goes_elsewhere(world) -> None:  # type: ignore[no-untyped-def]
    ks = [keeper(world, "small", max_cameras=1), keeper(world, "big")]
    settle(ks)
    assert len(ks[0].held()) == 1
    # big takes its share (4), then the orphans once they stayed free for a TTL, up to share + slack.
    settle(ks, rounds=5)  # > one TTL of rounds
    assert len(ks[1].held()) == 5
    assert len(set(ks[0].held()) | set(ks[1].held())) == 6


def test_a_dead_workers_cameras_are_taken_over_with_new_epochs(world) -> None:  # type: ignore[no-untyped-def]
    leases, _, clock = world
    a, b, c = keeper(world, "a"), keeper(world, "b"), keeper(world, "c")
    settle([a, b, c])
    lost = a.held()
    clock.now += int(TTL_S * S) + 1  # a stops renewing (dead); b and c heartbeat on
    settle([b, c])
    assert_one_owner_each([b, c], 7)
    for cam, epoch in lost.items():
        lease = leases.lease(cam)
        assert lease is not None and lease.worker_id in ("b", "c") and lease.epoch == epoch + 1
    # a comes back: its renewal finds it lost them all.
    a.round()
    assert not set(a.held()) & set(lost)
