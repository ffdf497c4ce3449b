"""``LeaseKeeper``: the loop by which an ingest worker holds its share of the cameras.

Every ``ttl/3`` it heartbeats (its ``workers`` row), renews the leases it holds,
gives back extras when another worker is short, takes free cameras up to its
share, and publishes the statuses of what it records. Between full rounds, while
it is short of its share, it looks for free cameras every half second, so a
camera another worker released is picked up within one reconnect.

Share: ``ceil(enabled cameras / live workers)``, at most ``worker_max_cameras``.
A worker takes up to its share at once; up to ``lease_slack`` more only of
cameras nobody picked up for a whole TTL (every other worker is full or capped).
When some live worker holds less than ``floor(cameras / workers)`` (it just
joined), the others give back down to that floor and take nothing beyond it, so
the released cameras go to the short worker; a balanced fleet does not churn.

A release is clean: the camera's session stops first (closing its segment),
the uploader indexes what is left of it under the still-valid lease, and only
then is the lease given back. A camera lost to another worker (this worker was
paused or cut off past its TTL) is stopped at once; its unindexed segments are
fenced out by the index (see ``SegmentIndex.add_segment``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import os
import secrets
import signal
from typing import Any, Callable, Protocol

from config.cameras import Camera
from config.settings import Settings
from ingest.recording.segmenter import Clock
from ingest.recording.spool import SpoolEntry
from storage.index.camera_status import CameraStatusTable
from storage.index.segments import Fence
from config.times import now_us
from storage.index.leases import DuplicateWorker, LeaseTable
from storage.index.registry import Registry

log = logging.getLogger(__name__)

# Longest wait for a released camera's last segment to be indexed before the lease goes.
RELEASE_DRAIN_SECONDS = 5.0
# How often a worker short of its share looks for free cameras between full rounds.
SHORT_POLL_SECONDS = 0.5


class _Supervised(Protocol):
    """What the keeper needs from ``ingest.supervisor.Supervisor``."""

    def reconcile(self, force: bool = False) -> None: ...
    def adopt(self, camera_ids: list[str]) -> int: ...
    def statuses(self) -> list[Any]: ...
    @property
    def spool(self) -> Any: ...


def exit_process(_why: str) -> None:
    """Ask this process to shut down (as SIGTERM does: open segments are closed and uploaded)."""
    os.kill(os.getpid(), signal.SIGTERM)


class LeaseKeeper:
    def __init__(
        self,
        leases: LeaseTable,
        registry: Registry,
        worker_id: str,
        *,
        ttl_seconds: float = 15.0,
        max_cameras: int = 0,
        slack: int = 1,
        advertise_url: str = "",
        status_table: CameraStatusTable | None = None,
        clock: Clock = now_us,
    ):
        self.leases = leases
        self.registry = registry
        self.worker_id = worker_id
        self.ttl_us = int(ttl_seconds * 1_000_000)
        self.interval = ttl_seconds / 3
        self.max_cameras = max_cameras
        self.slack = slack
        self.advertise_url = advertise_url
        self.status_table = status_table
        self.clock = clock
        self.supervisor: _Supervised | None = None
        self._held: dict[str, int] = {}  # camera -> epoch, while this worker holds it
        self._epochs: dict[str, int] = {}  # last epoch held per camera, for late uploads' fences
        self._releasing: set[str] = set()
        self._published: set[tuple[str, str]] = set()
        self._enabled: list[str] = []
        self._registry_version: object = None
        self._fair = 0
        self._others_short = True  # until the first round has looked
        self._draining = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.rounds = 0
        # This process's token in the workers row: a second live process with the
        # same worker id is refused at start (``register``), and one that took the id
        # over from a paused process makes the paused one stop (``heartbeat``).
        self.instance = secrets.token_hex(8)
        self.usurped = False
        # What to do then (``sharpeyes ingest`` shuts the process down: ``exit_process``).
        self.on_usurped: Callable[[str], None] = lambda why: None

    @classmethod
    def from_settings(cls, settings: Settings, leases: LeaseTable, registry: Registry,
                      status_table: CameraStatusTable | None = None) -> "LeaseKeeper":
        return cls(leases, registry, settings.worker_id, ttl_seconds=settings.lease_ttl_seconds,
                   max_cameras=settings.worker_max_cameras, slack=settings.lease_slack,
                   advertise_url=settings.advertise_url, status_table=status_table)

    # -- what the supervisor and uploader ask ------------------------------------------

    def owns(self, camera: Camera) -> bool:
        """Record ``camera``? (the ``Supervisor.owns`` hook)"""
        with self._lock:
            return camera.id in self._held and camera.id not in self._releasing

    def fence(self, entry: SpoolEntry) -> Fence:
        """The (worker, epoch) the index must still see for ``entry`` to be indexed."""
        with self._lock:
            return (self.worker_id, self._epochs.get(entry.camera_id, -1))

    def held(self) -> dict[str, int]:
        with self._lock:
            return dict(self._held)

    # -- lifecycle -------------------------------------------------------------------------

    def attach(self, supervisor: _Supervised) -> None:
        self.supervisor = supervisor

    def register(self) -> None:
        """Claim the worker id for this process; ``DuplicateWorker`` if another live
        process has it. A process that crashed within the TTL is told apart from a
        live one by waiting one heartbeat interval (so a restart may take that long)."""
        self.leases.register(self.worker_id, self.instance, now_us=self.clock(), ttl_us=self.ttl_us,
                             wait=lambda: time.sleep(self.interval + 1.0), clock=self.clock)

    def start(self) -> None:
        # Say we exist first, and take cameras only from the next round: workers
        # started together then see each other and split the cameras at once
        # instead of the first one taking everything and giving most of it back.
        now = self.clock()
        self._heartbeat(now)
        self._reclaim_own(now)
        self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
        self._thread.start()

    def drain(self) -> None:
        """Stop taking cameras but keep renewing: the supervisor is closing and its
        last segments must still be indexed under valid leases."""
        self._draining = True

    def stop(self) -> None:
        """Release every lease and leave the fleet (others take the cameras at once)."""
        self._draining = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        if self.usurped:
            return  # the leases and the worker row belong to the other process now
        try:
            with self._lock:
                held = list(self._held)
                self._held.clear()
            self.leases.release(self.worker_id, held, now_us=self.clock())
            self.leases.forget_worker(self.worker_id)
            if self.status_table is not None:
                self.status_table.withdraw(self.worker_id, self._published)
        except Exception:  # noqa: BLE001 - the leases expire on their own within the TTL
            log.exception("worker %s: could not release its leases; they expire within the TTL", self.worker_id)

    def _run(self) -> None:
        next_round = time.monotonic() + self.interval
        while not self._stop.is_set():
            short = len(self._held) < self._fair and not self._draining
            wait = min(next_round - time.monotonic(), SHORT_POLL_SECONDS) if short else next_round - time.monotonic()
            if self._stop.wait(max(0.0, wait)):
                return
            try:
                if time.monotonic() >= next_round:
                    next_round = time.monotonic() + self.interval
                    self.round()
                elif short:
                    self._take_free()
            except Exception:  # noqa: BLE001 - a database blip: the leases outlive it by the TTL
                log.exception("worker %s: lease round failed; retrying", self.worker_id)

    def _reclaim_own(self, now: int) -> None:
        """Take back, at once, the leases this worker id still holds: a worker restarted
        after a crash resumes its cameras without waiting out the TTL. The epoch stays
        (same owner), so its recovered spool segments are indexed too. Worker ids must be
        unique: two live processes with one id would both record these cameras."""
        own = [lease.camera_id for lease in self.leases.leases()
               if lease.worker_id == self.worker_id and lease.held_at(now)]
        if not own:
            return
        won = self.leases.renew(self.worker_id, own, now_us=now, ttl_us=self.ttl_us)
        with self._lock:
            self._held.update(won)
            self._epochs.update(won)
        log.info("worker %s: took back %d camera(s) it held before a restart", self.worker_id, len(won))
        if self.supervisor is not None:
            self.supervisor.reconcile(force=True)

    # -- one round ---------------------------------------------------------------------------

    def round(self) -> None:
        """Heartbeat, renew, rebalance and publish once."""
        now = self.clock()
        self.rounds += 1
        self._heartbeat(now)
        changed = self._renew(now)
        self._refresh_cameras()
        workers = self.leases.live_workers(now, self.ttl_us)
        n_workers = max(1, len(workers))
        fair = math.ceil(len(self._enabled) / n_workers)
        floor = len(self._enabled) // n_workers
        if self.max_cameras:
            fair, floor = min(fair, self.max_cameras), min(floor, self.max_cameras)
        # Someone (not capped) holds less than the floor: e.g. a worker that just joined.
        short_elsewhere = any(
            w.worker_id != self.worker_id and w.held < floor and (w.capacity == 0 or w.held < w.capacity)
            for w in workers
        )
        # While someone is short, stay at the floor (give back down to it, take nothing
        # beyond it) so the short worker gets the released cameras, not a neighbour.
        self._fair = floor if short_elsewhere else fair
        self._others_short = short_elsewhere
        # Cameras disabled or removed: the supervisor stops them; give their leases back.
        enabled = set(self._enabled)
        gone = [c for c in self._held if c not in enabled]
        keep = sorted(c for c in self._held if c in enabled)
        limit = self._fair if short_elsewhere else self._fair + self.slack
        extra = max(0, len(keep) - limit)
        if gone or extra:
            self._release(gone + (keep[len(keep) - extra:] if extra else []))
            changed = True
        if not self._draining:
            changed |= self._take_free(reconcile=False)
        if changed and self.supervisor is not None:
            self.supervisor.reconcile(force=True)
        self._publish(now)

    def _heartbeat(self, now: int) -> None:
        try:
            self.leases.heartbeat(self.worker_id, now_us=now, capacity=self.max_cameras, held=len(self._held),
                                  advertise_url=self.advertise_url, instance=self.instance)
        except DuplicateWorker as exc:
            # Another process runs under this id (it took it while this one was paused):
            # both would renew the same leases. Stop recording now, release nothing
            # (the leases are the other process's too) and leave.
            log.critical("%s", exc)
            self.usurped = True
            self._stop.set()
            with self._lock:
                self._held.clear()
            if self.supervisor is not None:
                self.supervisor.reconcile(force=True)
            self.on_usurped(str(exc))
            raise

    def _renew(self, now: int) -> bool:
        with self._lock:
            held = list(self._held)
        still = self.leases.renew(self.worker_id, held, now_us=now, ttl_us=self.ttl_us)
        lost = [c for c in held if c not in still]
        with self._lock:
            for c in lost:
                self._held.pop(c, None)
            self._held.update(still)
            self._epochs.update(still)
        for c in lost:
            log.warning("camera %s: lease lost to another worker (this worker %s was too slow to renew); "
                        "stopping it here", c, self.worker_id)
        return bool(lost)

    def _refresh_cameras(self) -> None:
        version = self.registry.version()
        if version != self._registry_version:
            self._enabled = sorted(c.id for c in self.registry.cameras() if c.enabled)
            self.leases.ensure(self._enabled)
            self._registry_version = version

    def _take_free(self, reconcile: bool = True) -> bool:
        """Take free cameras up to the share (and orphans up to the slack)."""
        if self._draining:
            return False
        now = self.clock()
        if len(self._held) >= len(self._enabled):
            return False
        cap = self.max_cameras or len(self._enabled)
        # None: every enabled camera of the registry, chosen in SQL (this poll runs every 0.5 s
        # while short; binding ~5,000 ids into it each time was the cost, tests/bench/county_sim.py).
        # Held cameras are not picked: their leases have not expired.
        won = self.leases.acquire(self.worker_id, None, min(self._fair, cap) - len(self._held),
                                  now_us=now, ttl_us=self.ttl_us)
        room = min(self._fair + self.slack, cap) - len(self._held) - len(won)
        # The slack is for cameras nobody else can take: not while another worker is short.
        if room > 0 and not self._others_short:
            won.update(self.leases.acquire(self.worker_id, None, room, now_us=now, ttl_us=self.ttl_us,
                                           free_before_us=now - self.ttl_us))
        won = {c: e for c, e in won.items() if c not in self._held}  # a lapsed lease of ours, renewed
        if not won:
            return False
        with self._lock:
            self._held.update(won)
            self._epochs.update(won)
        log.info("worker %s: took %d camera(s): %s", self.worker_id, len(won), ", ".join(sorted(won)))
        if self.supervisor is not None:
            # A shared spool: what the previous owner spooled becomes ours to upload,
            # and is in our spool before the sessions start (their gaps begin after it).
            self.supervisor.adopt(sorted(won))
        if reconcile and self.supervisor is not None:
            self.supervisor.reconcile(force=True)
        return True

    def _release(self, cameras: list[str]) -> None:
        """Stop the cameras' sessions, let their last segments be indexed, then give the leases back."""
        if not cameras:
            return
        with self._lock:
            self._releasing.update(cameras)
        if self.supervisor is not None:
            self.supervisor.reconcile(force=True)
            deadline = time.monotonic() + min(RELEASE_DRAIN_SECONDS, self.interval)
            want = set(cameras)
            while time.monotonic() < deadline and any(
                e.camera_id in want for e in self.supervisor.spool.closed_entries()
            ):
                time.sleep(0.05)
        self.leases.release(self.worker_id, cameras, now_us=self.clock())
        with self._lock:
            for c in cameras:
                self._held.pop(c, None)
            self._releasing.difference_update(cameras)
        log.info("worker %s: released %d camera(s) for other workers: %s", self.worker_id, len(cameras),
                 ", ".join(sorted(cameras)))

    def _publish(self, now: int) -> None:
        if self.status_table is None or self.supervisor is None:
            return
        statuses = [s.as_dict() for s in self.supervisor.statuses()]
        self.status_table.publish(self.worker_id, statuses, now_us=now)
        current = {(s["camera_id"], s["stream"]) for s in statuses}
        self.status_table.withdraw(self.worker_id, self._published - current)
        self._published = current
