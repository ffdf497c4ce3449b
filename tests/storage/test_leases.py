"""Leases, worker rows, fencing and published statuses, on SQLite and PostgreSQL (``index_engine``)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine

from storage import CameraStatusTable, FencedOut, LeaseTable, SegmentIndex
from tests.storage.test_index_contract import record

S = 1_000_000
TTL = 15 * S
T0 = 1_800_000_000 * S
CAMS = [f"cam-{i:02d}" for i in range(10)]


@pytest.fixture
def leases(index_engine: Engine) -> LeaseTable:
    table = LeaseTable(index_engine)
    table.ensure(CAMS)
    return table


def test_acquire_is_exclusive_and_bounded(leases: LeaseTable) -> None:
    a = leases.acquire("a", CAMS, 6, now_us=T0, ttl_us=TTL)
    b = leases.acquire("b", CAMS, 6, now_us=T0, ttl_us=TTL)
    assert len(a) == 6 and len(b) == 4
    assert not set(a) & set(b)
    assert set(a.values()) == {1} and set(b.values()) == {1}
    assert {lease.worker_id for lease in leases.leases()} == {"a", "b"}


def test_expired_lease_is_taken_over_with_a_new_epoch(leases: LeaseTable) -> None:
    leases.acquire("a", CAMS[:1], 1, now_us=T0, ttl_us=TTL)
    assert leases.acquire("b", CAMS[:1], 1, now_us=T0 + TTL - 1, ttl_us=TTL) == {}  # still a's
    assert leases.acquire("b", CAMS[:1], 1, now_us=T0 + TTL + 1, ttl_us=TTL) == {CAMS[0]: 2}
    # a comes back from a pause: its renewal finds nothing to renew.
    assert leases.renew("a", CAMS[:1], now_us=T0 + TTL + 2, ttl_us=TTL) == {}
    assert leases.renew("b", CAMS[:1], now_us=T0 + TTL + 2, ttl_us=TTL) == {CAMS[0]: 2}


def test_taking_back_ones_own_lapsed_lease_keeps_the_epoch(leases: LeaseTable) -> None:
    leases.acquire("a", CAMS[:1], 1, now_us=T0, ttl_us=TTL)
    leases.release("a", CAMS[:1], now_us=T0 + S)
    assert leases.acquire("a", CAMS[:1], 1, now_us=T0 + 2 * S, ttl_us=TTL) == {CAMS[0]: 1}
    leases.release("a", CAMS[:1], now_us=T0 + 3 * S)
    assert leases.acquire("b", CAMS[:1], 1, now_us=T0 + 4 * S, ttl_us=TTL) == {CAMS[0]: 2}


def test_orphans_only_after_free_before(leases: LeaseTable) -> None:
    leases.acquire("a", CAMS[:1], 1, now_us=T0, ttl_us=TTL)
    leases.release("a", CAMS[:1], now_us=T0 + S)
    assert leases.acquire("b", CAMS[:1], 1, now_us=T0 + 2 * S, ttl_us=TTL, free_before_us=T0) == {}
    assert leases.acquire("b", CAMS[:1], 1, now_us=T0 + 2 * S, ttl_us=TTL) == {CAMS[0]: 2}


def test_concurrent_acquisition_gives_each_camera_one_owner(leases: LeaseTable) -> None:
    won: dict[str, dict[str, int]] = {}
    barrier = threading.Barrier(6)

    def worker(name: str) -> None:
        barrier.wait()
        won[name] = leases.acquire(name, CAMS, 4, now_us=T0, ttl_us=TTL)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    owners: dict[str, str] = {}
    for name, cams in won.items():
        for cam in cams:
            assert cam not in owners, f"{cam} won by {owners.get(cam)} and {name}"
            owners[cam] = name
    table = {lease.camera_id: lease.worker_id for lease in leases.leases() if lease.worker_id}
    assert table == owners


def test_workers_heartbeat_and_expire(leases: LeaseTable) -> None:
    leases.heartbeat("a", now_us=T0, capacity=5, held=3, advertise_url="http://10.0.0.1:8080")
    leases.heartbeat("b", now_us=T0 + 10 * S)
    assert [w.worker_id for w in leases.live_workers(T0 + 12 * S, TTL)] == ["a", "b"]
    assert [w.worker_id for w in leases.live_workers(T0 + 20 * S, TTL)] == ["b"]
    a = leases.worker("a")
    assert a is not None and (a.capacity, a.held, a.advertise_url) == (5, 3, "http://10.0.0.1:8080")
    leases.forget_worker("b")
    assert leases.live_workers(T0 + 12 * S, TTL)[0].worker_id == "a"


def test_owner_url_follows_the_lease(leases: LeaseTable) -> None:
    leases.heartbeat("a", now_us=T0, advertise_url="http://a:8080")
    assert leases.owner_url(CAMS[0], now_us=T0) is None
    leases.acquire("a", CAMS[:1], 1, now_us=T0, ttl_us=TTL)
    assert leases.owner_url(CAMS[0], now_us=T0 + S) == "http://a:8080"
    assert leases.owner_url(CAMS[0], now_us=T0 + TTL + 1) is None  # expired: nobody to redirect to


def test_fenced_add_segment(index_engine: Engine, leases: LeaseTable) -> None:
    index = SegmentIndex(index_engine)
    cam = CAMS[0]
    leases.acquire("a", [cam], 1, now_us=T0, ttl_us=TTL)
    index.add_segment(record(0, 60, camera=cam), fence=("a", 1))
    # b takes the camera over while a is paused; a's next segment must not be indexed.
    leases.acquire("b", [cam], 1, now_us=T0 + TTL + 1, ttl_us=TTL)
    with pytest.raises(FencedOut) as err:
        index.add_segment(record(60, 120, camera=cam), fence=("a", 1))
    assert cam in str(err.value) and "'b' at epoch 2" in str(err.value)
    assert [r.start_us for r in index.segments(cam)] == [0]
    index.add_segment(record(70, 130, camera=cam), fence=("b", 2))
    with pytest.raises(FencedOut):
        index.add_segment(record(0, 60, camera="no-lease-row"), fence=("a", 1))
    assert index.references(cam, "main", 70 * S, f"{cam}/main/70.mp4")
    assert not index.references(cam, "main", 60 * S, f"{cam}/main/60.mp4")


def test_published_statuses(index_engine: Engine) -> None:
    table = CameraStatusTable(index_engine)
    st = {"camera_id": "c1", "stream": "main", "state": "recording", "fps": 25.0, "bitrate_bps": 2e6,
          "last_error": "", "width": 640}
    table.publish("a", [st, {**st, "stream": "sub"}], now_us=T0)
    table.publish("b", [{**st, "camera_id": "c2", "state": "offline", "last_error": "camera c2: refused"}], now_us=T0 + 5 * S)
    got = table.statuses(now_us=T0 + 6 * S, stale_us=30 * S)
    assert got[("c1", "main")]["worker_id"] == "a" and got[("c1", "main")]["width"] == 640
    assert got[("c2", "main")]["state"] == "offline"
    assert set(table.statuses(now_us=T0 + 32 * S, stale_us=30 * S)) == {("c2", "main")}
    # c1 moves to b: a withdrawing its old rows must not remove b's.
    table.publish("b", [st], now_us=T0 + 7 * S)
    table.withdraw("a", [("c1", "main"), ("c1", "sub")])
    got = table.statuses(now_us=T0 + 8 * S, stale_us=30 * S)
    assert got[("c1", "main")]["worker_id"] == "b" and ("c1", "sub") not in got
