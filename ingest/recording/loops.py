"""``IngestLoops``: the event-loop threads the native puller runs on, sharded across cores.

One asyncio loop in one thread serves many cameras (the native RTSP client never blocks,
and a camera costs a few callbacks a packet). Each loop has its own spool writer thread
(``BackgroundFiles``) so a slow disk stalls no loop.

How many loops: Python runs one thread's bytecode at a time, so a second loop in the same
process does not add a core for the Python work; it only lets one loop's system calls
overlap the other's Python, and the two then hand the GIL back and forth all the time.
Measured at N = 64 1080p25 cameras (tests/bench/ingest_capacity.py, 3 interleaved rounds
each, 2-core machine): two loops 0.38-0.46 % of a core per camera, one loop 0.36-0.38. So
loops are added as cameras come, one per ``cameras_per_loop`` (``ingest_cameras_per_loop``,
default 128: a loop then carries well under a core), up to ``count`` (``ingest_loops``,
default the CPU count). A camera goes to the loop with the fewest cameras.

Each loop waits ``read_batch_s`` (``ingest_read_batch_ms``) before it polls its sockets. A
camera's TCP stream otherwise wakes the loop for every few packets: with 64 cameras, most of a
worker's CPU went to ``epoll_wait`` and ``recv`` themselves (py-spy: 55 % in the selector, 9 %
in the read callback). Waiting a few milliseconds lets every socket fill, so one wake-up serves
many cameras and one ``recv`` takes everything a camera sent meanwhile. The cost is that much
latency for live viewers and timers: the default 25 ms is under a frame at 25 or 30 fps.
Measured at N = 64 1080p25 cameras (tests/bench/ingest_capacity.py, against ffmpeg per
camera in the same run): 0 ms 0.95x ffmpeg's CPU, 10 ms 0.84x, 25 ms 0.63x.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import threading
import time
from collections.abc import Callable

from ingest.recording.background_files import BackgroundFiles


class BatchingSelector(selectors.DefaultSelector):  # type: ignore[misc, valid-type]
    """A selector that lets ``hold_s`` pass before each poll, so ready sockets gather."""

    def __init__(self, hold_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        self.hold_s = hold_s
        self._sleep = sleep

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.hold_s > 0 and (timeout is None or timeout > 0):
            hold = self.hold_s if timeout is None else min(self.hold_s, timeout)
            self._sleep(hold)
            if timeout is not None:
                timeout -= hold
        return super().select(timeout)


class IngestLoop:
    """One event loop thread and its spool writer."""

    def __init__(self, index: int, read_batch_s: float = 0.0) -> None:
        selector = BatchingSelector(read_batch_s) if read_batch_s > 0 else selectors.DefaultSelector()
        self.loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop(selector)
        self.files = BackgroundFiles(f"spool-writer-{index}")
        self.cameras = 0
        self._thread = threading.Thread(target=self._run, name=f"ingest-loop-{index}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.files.close()


CAMERAS_PER_LOOP = 128


class IngestLoops:
    """Up to ``count`` loops (default: the CPU count), started as cameras come: a new one when
    every loop has ``cameras_per_loop`` cameras; ``read_batch_s`` as above."""

    def __init__(self, count: int | None = None, read_batch_s: float = 0.0,
                 cameras_per_loop: int = CAMERAS_PER_LOOP) -> None:
        self.count = max(1, count or os.cpu_count() or 1)
        self.read_batch_s = read_batch_s
        self.cameras_per_loop = max(1, cameras_per_loop)
        self._loops: list[IngestLoop] = []
        self._lock = threading.Lock()

    def assign(self) -> IngestLoop:
        """The loop for a new camera stream (call ``release`` when it stops)."""
        with self._lock:
            full = all(lp.cameras >= self.cameras_per_loop for lp in self._loops)
            if len(self._loops) < self.count and full:
                self._loops.append(IngestLoop(len(self._loops), self.read_batch_s))
            loop = min(self._loops, key=lambda lp: lp.cameras)
            loop.cameras += 1
            return loop

    @property
    def started(self) -> int:
        """Loops started so far."""
        return len(self._loops)

    def release(self, loop: IngestLoop) -> None:
        with self._lock:
            loop.cameras = max(0, loop.cameras - 1)

    def close(self) -> None:
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            loop.close()
