"""Reconnect delays as plain data: (delay in seconds, how many times); the last step repeats."""

from __future__ import annotations

# 1 s x5, 5 s x5, 10 s x10, then every 60 s: quick recovery from a blip, and a
# dead camera costs one attempt a minute.
RECONNECT_STEPS: tuple[tuple[float, int], ...] = ((1.0, 5), (5.0, 5), (10.0, 10), (60.0, 1))
# Wrong credentials will not fix themselves in a second; retry slowly so a
# camera's lock-out policy is not triggered by a storm of attempts.
UNAUTHORIZED_STEPS: tuple[tuple[float, int], ...] = ((10.0, 3), (60.0, 1))


def reconnect_delay(attempt: int, steps: tuple[tuple[float, int], ...] = RECONNECT_STEPS) -> float:
    """Delay before reconnect ``attempt`` (0-based) under ``steps``."""
    for delay, count in steps:
        if attempt < count:
            return delay
        attempt -= count
    return steps[-1][0]
