"""Reconnect delays as plain data: (delay in seconds, how many times); the last step repeats."""

from __future__ import annotations

# 1 s for the first minute, 2 s for the next, then 10 s x30, then every 60 s. A camera
# back after an outage of up to two minutes is recording again within about 2 s of its
# return (docs/reliability.md promises 3 s); a refused connect costs next to nothing, and
# a dead camera still ends at one attempt a minute.
RECONNECT_STEPS: tuple[tuple[float, int], ...] = ((1.0, 60), (2.0, 30), (10.0, 30), (60.0, 1))
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
