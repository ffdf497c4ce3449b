"""Fan-out of access units to many subscribers, with a GOP cache and bounded queues.

A producer calls ``publish`` from the event loop and never waits. Each subscriber has its
own bounded queue: when a slow one overflows, its queue is emptied and it skips to the
next keyframe, so it neither blocks the producer nor the other subscribers, and it never
sees a broken GOP.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, Protocol, TypeVar



class Keyframed(Protocol):
    """What the fan-out needs of an item: whether a viewer may start there."""

    @property
    def keyframe(self) -> bool: ...


# Access units by default; the MSE muxer fans out its fMP4 fragments the same way.
T = TypeVar("T", bound=Keyframed)

# 6 s at 25 fps: more than one 2 s GOP, so a new subscriber gets the whole cached GOP.
DEFAULT_MAX_QUEUE = 150
# A source with a very long (or no) GOP must not grow the cache without bound.
MAX_GOP_CACHE = 600


class AccessUnitSubscription(Generic[T]):
    """An async iterator of access units that starts at a keyframe. Close it when done."""

    def __init__(self, fanout: AccessUnitFanout[T], max_queue: int) -> None:
        self._fanout = fanout
        self._max_queue = max_queue
        self._queue: deque[T] = deque()
        self._wakeup = asyncio.Event()
        self._need_keyframe = True
        self._closed = False
        self.dropped = 0  # access units thrown away because this subscriber fell behind
        self.overflows = 0  # times the queue overflowed

    def _offer(self, au: T) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._max_queue:
            self.overflows += 1
            self.dropped += len(self._queue)
            self._queue.clear()
            self._need_keyframe = True
        if self._need_keyframe:
            if not au.keyframe:
                self.dropped += 1
                return
            self._need_keyframe = False
        self._queue.append(au)
        self._wakeup.set()

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()

    def close(self) -> None:
        """Stop receiving; pending ``__anext__`` calls end with StopAsyncIteration."""
        self._fanout._unsubscribe(self)
        self._end()

    def __aiter__(self) -> AccessUnitSubscription[T]:
        return self

    async def __anext__(self) -> T:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    def get_nowait(self) -> T | None:
        """The next queued access unit, or None if none is queued yet."""
        return self._queue.popleft() if self._queue else None


class AccessUnitFanout(Generic[T]):
    """Keeps the current GOP and hands every published access unit to all subscribers."""

    def __init__(self, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self._max_queue = max_queue
        self._subs: set[AccessUnitSubscription[T]] = set()
        self._gop: list[T] = []
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def publish(self, au: T) -> None:
        """Cache and deliver one access unit. Must be called on the subscribers' event loop."""
        if au.keyframe:
            self._gop = [au]
        elif self._gop and len(self._gop) < MAX_GOP_CACHE:
            self._gop.append(au)
        else:
            self._gop = []  # no keyframe yet, or a GOP too long to keep: new subscribers wait
        for sub in self._subs:
            sub._offer(au)

    @property
    def has_gop(self) -> bool:
        return bool(self._gop)

    def clear_cache(self) -> None:
        """Forget the cached GOP (the publisher paused: it would be stale for the next subscriber)."""
        self._gop = []

    def subscribe(self, max_queue: int | None = None) -> AccessUnitSubscription[T]:
        """A new subscription, primed with the cached GOP so it can start at once."""
        sub = AccessUnitSubscription(self, max_queue or self._max_queue)
        if self._closed:
            sub._end()
            return sub
        for au in self._gop:  # starts with a keyframe by construction
            sub._offer(au)
        self._subs.add(sub)
        return sub

    def _unsubscribe(self, sub: AccessUnitSubscription[T]) -> None:
        self._subs.discard(sub)

    def close(self) -> None:
        """End every subscription (they drain what is queued, then stop)."""
        self._closed = True
        for sub in list(self._subs):
            sub._end()
        self._subs.clear()
