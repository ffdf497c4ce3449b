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


def test_fencing_is_by_time(index_engine: Engine, leases: LeaseTable) -> None:
    """A segment is refused only for the time someone else has: an indexed row, or
    (for a worker that lost the lease) the time since the takeover."""
    index = SegmentIndex(index_engine)
    cam = CAMS[0]
    t0 = T0 // S
    leases.acquire("a", [cam], 1, now_us=T0, ttl_us=TTL)
    index.add_segment(record(t0, t0 + 60, camera=cam), fence=("a", 1))
    # b takes the camera over while a is paused, at t0 + 16 s.
    leases.acquire("b", [cam], 1, now_us=T0 + TTL + 1, ttl_us=TTL)
    took = leases.lease(cam).acquired_us  # type: ignore[union-attr]
    with pytest.raises(FencedOut) as err:
        index.add_segment(record(t0 + 60, t0 + 120, camera=cam), fence=("a", 1))
    assert err.value.lost_lease and cam in str(err.value) and "'b' (epoch 2)" in str(err.value)
    assert [(c.start_us, c.end_us, c.reason) for c in err.value.claims] == [((t0 + 60) * S, (t0 + 120) * S,
                                                                            "taken_over")]
    assert took == T0 + TTL + 1
    # What a recorded before the takeover, and nobody else has, is indexed although its epoch is stale.
    index.add_segment(record(t0 - 30, t0, camera=cam), fence=("a", 1))
    index.add_segment(record(t0 + 70, t0 + 130, camera=cam), fence=("b", 2))
    # The owner too is refused where another row already has the time.
    with pytest.raises(FencedOut) as err:
        index.add_segment(record(t0 + 100, t0 + 160, camera=cam), fence=("b", 2))
    assert [(c.start_us, c.end_us, c.reason) for c in err.value.claims] == [((t0 + 100) * S, (t0 + 130) * S,
                                                                            "indexed")]
    assert index.claims(cam, "main", (t0 + 50) * S, (t0 + 75) * S, ("b", 2)) == [
        c for c in index.claims(cam, "main", (t0 + 50) * S, (t0 + 75) * S, ("b", 2)) if c.reason == "indexed"]
    # No lease row: only overlaps count.
    index.add_segment(record(0, 60, camera="no-lease-row"), fence=("a", 1))
    # Re-indexing the same key is idempotent, not an overlap.
    again = index.add_segment(record(t0 + 70, t0 + 130, camera=cam), fence=("b", 2))
    assert again.start_us == (t0 + 70) * S
    assert [r.start_us // S - t0 for r in index.segments(cam)] == [-30, 0, 70]
    assert index.references(cam, "main", (t0 + 70) * S, f"{cam}/main/{t0 + 70}.mp4")
    assert not index.references(cam, "main", (t0 + 60) * S, f"{cam}/main/{t0 + 60}.mp4")


def test_hash_chain_links_to_the_row_before_in_time(index_engine: Engine) -> None:
    index = SegmentIndex(index_engine)
    a = index.add_segment(record(100, 160))
    c = index.add_segment(record(170, 230))
    b = index.add_segment(record(160, 170))  # late: an inserted link
    assert a.prev_sha256 is None and c.prev_sha256 == a.sha256 and b.prev_sha256 == a.sha256


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


def test_a_worker_id_is_one_live_process(leases: LeaseTable) -> None:
    from storage.index.leases import DuplicateWorker

    clock = iter(range(T0, T0 + 1000 * S, S))
    leases.register("w", "proc-x", now_us=T0, ttl_us=TTL, wait=lambda: None, clock=lambda: next(clock))
    leases.heartbeat("w", now_us=T0 + S, instance="proc-x")
    # A second process while x keeps heartbeating: refused, with what to do.
    with pytest.raises(DuplicateWorker, match="in use by another live process.*another --worker-id"):
        leases.register("w", "proc-y", now_us=T0 + 2 * S, ttl_us=TTL, clock=lambda: T0 + 9 * S,
                        wait=lambda: leases.heartbeat("w", now_us=T0 + 8 * S, instance="proc-x"))
    leases.heartbeat("w", now_us=T0 + 10 * S, instance="proc-x")  # x is unaffected
    # x crashed (no heartbeat during the wait): a restart takes the id over at once...
    leases.register("w", "proc-z", now_us=T0 + 11 * S, ttl_us=TTL, wait=lambda: None, clock=lambda: T0 + 12 * S)
    leases.heartbeat("w", now_us=T0 + 13 * S, instance="proc-z")
    # ...and x, had it only been paused, learns it at its next heartbeat.
    with pytest.raises(DuplicateWorker, match="taken by another process"):
        leases.heartbeat("w", now_us=T0 + 14 * S, instance="proc-x")
    assert leases.worker("w").last_seen_us == T0 + 13 * S  # type: ignore[union-attr]
