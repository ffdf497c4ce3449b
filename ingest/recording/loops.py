"""``IngestLoops``: the event-loop threads the native puller runs on, sharded across cores.

One asyncio loop in one thread serves many cameras (the native RTSP client never blocks,
and a camera costs a few callbacks a packet). Python runs one thread at a time, so more
loops than cores only add contention; fewer leave cores idle when the cameras are more
than one core can take. ``ingest_loops`` (default: the CPU count) sets how many; each
loop has its own spool writer thread (``BackgroundFiles``) so a slow disk stalls no loop.
A camera goes to the loop with the fewest cameras.
"""

from __future__ import annotations

import asyncio
import os
import threading

from ingest.recording.background_files import BackgroundFiles


class IngestLoop:
    """One event loop thread and its spool writer."""

    def __init__(self, index: int) -> None:
        self.loop = asyncio.new_event_loop()
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


class IngestLoops:
    """``count`` loops (default: the CPU count), started on first use."""

    def __init__(self, count: int | None = None) -> None:
        self.count = max(1, count or os.cpu_count() or 1)
        self._loops: list[IngestLoop] = []
        self._lock = threading.Lock()

    def assign(self) -> IngestLoop:
        """The loop for a new camera stream (call ``release`` when it stops)."""
        with self._lock:
            if len(self._loops) < self.count and all(lp.cameras for lp in self._loops):
                self._loops.append(IngestLoop(len(self._loops)))
            loop = min(self._loops, key=lambda lp: lp.cameras) if self._loops else None
            if loop is None:
                loop = IngestLoop(0)
                self._loops.append(loop)
            loop.cameras += 1
            return loop

    def release(self, loop: IngestLoop) -> None:
        with self._lock:
            loop.cameras = max(0, loop.cameras - 1)

    def close(self) -> None:
        with self._lock:
            loops, self._loops = self._loops, []
        for loop in loops:
            loop.close()
