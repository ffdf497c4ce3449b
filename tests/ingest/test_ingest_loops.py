"""The native ingest loops gather reads: a loop with ``read_batch_s`` wakes once per hold for a
camera that sends in many small writes, instead of once per write."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from config.settings import Settings
from ingest.recording.loops import BatchingSelector, IngestLoops

CHUNKS = 40
GAP_S = 0.005


class _Reads(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None], total: int) -> None:
        self.calls = 0
        self.got = 0
        self.done = done
        self.total = total

    def data_received(self, data: bytes) -> None:
        self.calls += 1
        self.got += len(data)
        if self.got >= self.total and not self.done.done():
            self.done.set_result(None)


def _reads_of_a_trickle(read_batch_s: float) -> tuple[int, float]:
    """(data_received calls, seconds the writer took) for CHUNKS writes GAP_S apart."""
    loops = IngestLoops(1, read_batch_s)
    ingest = loops.assign()
    ours, theirs = socket.socketpair()
    try:
        async def connect() -> tuple[_Reads, asyncio.Future[None]]:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            _, proto = await asyncio.get_running_loop().connect_accepted_socket(
                lambda: _Reads(done, CHUNKS * 100), ours)
            return proto, done

        proto, done = asyncio.run_coroutine_threadsafe(connect(), ingest.loop).result(5)
        started = time.monotonic()
        for _ in range(CHUNKS):
            theirs.sendall(b"x" * 100)
            time.sleep(GAP_S)
        took = time.monotonic() - started
        asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(done), 5), ingest.loop).result(10)
        return proto.calls, took
    finally:
        theirs.close()
        loops.close()


def test_a_batching_loop_reads_once_per_hold_not_once_per_write() -> None:
    hold = 0.05
    calls, took = _reads_of_a_trickle(hold)
    # One read per hold while the writer runs (plus the first and the last), however slowly
    # the writer ran; without the hold every 5 ms write is a read of its own.
    assert calls <= took / hold + 3, (calls, took)
    unbatched, _ = _reads_of_a_trickle(0.0)
    assert unbatched > calls, (unbatched, calls)


def test_the_setting_reaches_the_loops_selector() -> None:
    assert Settings().ingest_read_batch_ms == 25.0
    loops = IngestLoops(1, Settings().ingest_read_batch_ms / 1000)
    try:
        selector = loops.assign().loop._selector  # type: ignore[attr-defined]
        assert isinstance(selector, BatchingSelector) and selector.hold_s == 0.025
    finally:
        loops.close()


def test_a_hold_does_not_outlast_a_due_timer() -> None:
    holds: list[float] = []
    selector = BatchingSelector(10.0, sleep=holds.append)
    try:
        assert selector.select(0.01) == []
        assert selector.select(0) == []  # a poll that must not wait does not hold either
        assert holds == [0.01]  # the hold is cut to the timeout, not 10 s
    finally:
        selector.close()


def test_wakeups_from_other_threads_still_arrive() -> None:
    loops = IngestLoops(1, 0.02)
    try:
        loop = loops.assign().loop
        fired = threading.Event()
        loop.call_soon_threadsafe(fired.set)
        assert fired.wait(5)
    finally:
        loops.close()


def test_loops_are_added_per_cameras_per_loop_up_to_the_count() -> None:
    # Loops in one process share the GIL: a second loop only when the first has its share.
    loops = IngestLoops(2, 0.0, cameras_per_loop=3)
    try:
        first = [loops.assign() for _ in range(3)]
        assert loops.started == 1 and len({id(lp) for lp in first}) == 1
        fourth = loops.assign()
        assert loops.started == 2 and fourth is not first[0]
        more = [loops.assign() for _ in range(6)]  # at the count: shared out by fewest cameras
        assert loops.started == 2 and sorted(lp.cameras for lp in {id(lp): lp for lp in more}.values()) == [5, 5]
    finally:
        loops.close()


def test_the_default_puts_64_cameras_on_one_loop() -> None:
    settings = Settings()
    loops = IngestLoops(settings.ingest_loops, 0.0, settings.ingest_cameras_per_loop)
    try:
        for _ in range(64):
            loops.assign()
        assert loops.started == 1
    finally:
        loops.close()
