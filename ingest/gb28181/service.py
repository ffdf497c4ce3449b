"""``GbService``: the GB/T 28181 device server (registrar, keepalives, queries, catalogs).

It owns one ``SipEndpoint`` bound to ``gb_sip_bind`` and keeps a ``DeviceSession`` per
registered device: the address its REGISTER came from (requests go there: it is the only
address that works through NAT), its Contact, expiry and keepalive tracker. State goes to
the index (``GbDeviceStore``) so every node sees it; channels go to the camera registry.

For the media side (INVITE) and anything else that needs a device::

    session = service.sessions[device_id]          # .peer, .contact, .online
    result = await service.endpoint.invite(session.peer, service.device_uri(device_id, channel_id), ...)
    service.add_listener(lambda device_id, state, reason: ...)   # online/offline/unregistered
    service.response_handlers["RecordInfo"] = fn   # fn(device_id, doc): Response MESSAGEs we do not consume
    service.notify_handlers["MediaStatus"] = fn    # fn(device_id, doc): Notify MESSAGEs other than Keepalive
    doc = await service.query(device_id, "DeviceInfo")

``GbServer`` runs a service on its own event loop in a thread (``sharpeyes run``); call into
it from other threads with ``server.call(coro)``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

from config.settings import Settings
from config.times import gb_local_time
from ingest.gb28181.catalog import CatalogAssembler, CatalogResult
from ingest.gb28181.channels import sync_channels
from ingest.gb28181.keepalive import KeepaliveTracker
from ingest.gb28181.manscdp import MANSCDP_TYPE, Manscdp, ManscdpError, build, read_body
from ingest.gb28181.registrar import Audit, RegisterRateLimit, Registrar, Registration
from ingest.gb28181.sip import Incoming, Peer, SipEndpoint, SipResponse, Timers
from storage.index.gb_devices import GbDeviceStore
from storage.index.registry import Registry
from config.times import now_us

log = logging.getLogger(__name__)

T = TypeVar("T")
StateListener = Callable[[str, str, str], None]
DocHandler = Callable[[str, Manscdp], Awaitable[None] | None]
# Refusals (wrong password, floods) are written to a device's row at most this often.
REFUSAL_WRITE_SECONDS = 10.0


class GbError(RuntimeError):
    """A request about a device that cannot be done now; the message says why."""


@dataclass
class DeviceSession:
    device_id: str
    peer: Peer
    contact: str
    expires_at: float            # monotonic
    registered_at: float         # monotonic
    online: bool = True
    keepalive: KeepaliveTracker = field(default_factory=KeepaliveTracker)


class GbService:
    def __init__(self, settings: Settings, registry: Registry, devices: GbDeviceStore, *, audit: Audit | None = None,
                 timers: Timers = Timers(), catalog_idle: float = 5.0, query_timeout: float = 10.0,
                 monitor_interval: float = 1.0, rate_limit: RegisterRateLimit | None = None,
                 bind: str | None = None, query_on_register: bool = True) -> None:
        self.settings, self.registry, self.devices = settings, registry, devices
        host, _, port = (bind or settings.gb_sip_bind).rpartition(":")
        self.endpoint = SipEndpoint(user=settings.gb_id, domain=settings.gb_domain, host=host, port=int(port),
                                    advertise_host=settings.gb_media_host or None, timers=timers,
                                    user_agent="sharpeyes GB/T 28181")
        self.endpoint.on_reject = self._on_reject
        self.registrar = Registrar(settings.gb_domain, self._password_of, rate_limit=rate_limit, audit=audit)
        self.sessions: dict[str, DeviceSession] = {}
        self.catalogs = CatalogAssembler(idle_timeout=catalog_idle, max_wait=max(60.0, catalog_idle * 4))
        self.query_timeout = query_timeout
        self.monitor_interval = monitor_interval
        self.query_on_register = query_on_register
        self.response_handlers: dict[str, DocHandler] = {}
        # MESSAGE handlers by sender id, for peers that are no devices (upper platforms: the cascade).
        self.message_routes: dict[str, Callable[[Incoming], Awaitable[SipResponse]]] = {}
        self.notify_handlers: dict[str, DocHandler] = {}
        self._listeners: list[StateListener] = []
        self._waiters: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self._sn = itertools.count(int.from_bytes(os.urandom(2), "big") + 1)
        self._last_refusal_write: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self.rejected: dict[str, str] = {}  # source host -> last reason a message from it was refused
        self._reasons: dict[str, str] = {}  # device id -> its last state change, for offline_reason
        self._beats: dict[str, tuple[int, float]] = {}  # keepalives not yet written (see check)
        self.endpoint.on("REGISTER", self._on_register)
        self.endpoint.on("MESSAGE", self._on_message)

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.endpoint.start()
        await self._db(self._restore)
        self._monitor = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        beats, self._beats = self._beats, {}
        try:
            await self._db(self.devices.touch_keepalives, beats)
        except Exception:  # noqa: BLE001 - closing anyway; the times are only a display
            log.exception("keepalive times could not be written on close")
        tasks = [*self._tasks, *([self._monitor] if self._monitor is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.endpoint.close()

    def add_listener(self, listener: StateListener) -> None:
        """Called with (device id, state, reason) on every change of a device's state."""
        self._listeners.append(listener)

    def _restore(self) -> None:
        """Devices whose registration (by this worker) is still valid stay registered across a restart."""
        now_u, mono = now_us(), time.monotonic()
        for dev in self.devices.all():
            if dev.state == "online" and dev.expires_us > now_u and dev.worker_id == self.settings.worker_id \
                    and dev.source_host:
                self.sessions[dev.device_id] = DeviceSession(
                    dev.device_id, Peer(dev.transport or "UDP", dev.source_host, dev.source_port), dev.contact,
                    expires_at=mono + (dev.expires_us - now_u) / 1e6, registered_at=mono)
                self.sessions[dev.device_id].keepalive.default_interval = dev.keepalive_interval_s or 60.0

    # -- helpers -----------------------------------------------------------------------------

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Database work off the event loop, so one slow write does not hold up other devices."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self, device_id: str, state: str, reason: str) -> None:
        self._reasons[device_id] = f"{state}: {reason}"
        if len(self._reasons) > 100_000:
            self._reasons.pop(next(iter(self._reasons)))
        for listener in self._listeners:
            try:
                listener(device_id, state, reason)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the server
                log.exception("device %s: state listener failed", device_id)

    def _password_of(self, device_id: str) -> str | None:
        own = self.devices.password(device_id)
        if own:
            return own
        return self.settings.gb_password or None

    # -- the device directory the media side asks (ingest.gb28181.media.session.DeviceDirectory);
    # called from session threads: plain dict reads, no database.

    def peer(self, device_id: str) -> Peer | None:
        """Where to send requests for ``device_id`` (its REGISTER's source); None unless it is online."""
        session = self.sessions.get(device_id)
        return session.peer if session is not None and session.online else None

    def media_transport(self, device_id: str) -> str:
        """The media transport an operator set for the device ("" for the default)."""
        device = self.devices.get(device_id)
        return device.media_transport if device is not None else ""

    def record_invite(self, device_id: str, *, channel: str, outcome: str, reason: str = "") -> None:
        """For the media sessions (any thread): the last INVITE's outcome, for ``gb doctor``."""
        self.devices.record_invite(device_id, channel=channel, outcome=outcome, reason=reason)

    def offline_reason(self, device_id: str) -> str:
        """Why ``peer`` is None, for gap rows and status."""
        session = self.sessions.get(device_id)
        if session is not None and session.online:
            return "online"
        return self._reasons.get(device_id) or f"device {device_id} has not registered with this server"

    def device_uri(self, device_id: str, user: str | None = None) -> str:
        """The Request-URI for a device's channel (or the device itself)."""
        session = self.sessions.get(device_id)
        where = f"{session.peer.host}:{session.peer.port}" if session else device_id[:10]
        return f"sip:{user or device_id}@{where}"

    def _on_reject(self, peer: Peer, reason: str) -> None:
        self.rejected[peer.host] = reason
        if len(self.rejected) > 10_000:
            self.rejected.pop(next(iter(self.rejected)))
        for session in self.sessions.values():
            if session.peer.host == peer.host and session.peer.port == peer.port:
                self._spawn(self._note_refusal(session.device_id, f"unreadable SIP message: {reason}",
                                               keep_state=True))

    async def _note_refusal(self, device_id: str, reason: str, *, keep_state: bool) -> None:
        """Put why a message from a device was refused in its status, at most every few seconds."""
        mono = time.monotonic()
        if mono - self._last_refusal_write.get(device_id, -1e9) < REFUSAL_WRITE_SECONDS:
            return
        self._last_refusal_write[device_id] = mono
        if len(self._last_refusal_write) > 10_000:
            self._last_refusal_write.clear()
        session = self.sessions.get(device_id)
        if session is not None and session.online or keep_state:
            await self._db(self.devices.merge_json, device_id, "status",
                           {"last_refusal": reason, "last_refusal_us": now_us()})
            return
        known = await self._db(self.devices.get, device_id)
        if known is None:
            return  # unknown ids get no row: a flood of made-up ids must not fill the table
        await self._db(self.devices.update, device_id, state="refused", reason=reason)

    # -- REGISTER --------------------------------------------------------------------------

    async def _on_register(self, inc: Incoming) -> SipResponse:
        decision = await self._db(self.registrar.decide, inc)
        if decision.registration is not None:
            await self._registered(decision.registration)
        elif decision.refused and decision.device_id:
            self._spawn(self._note_refusal(decision.device_id, decision.refused, keep_state=False))
        if decision.response.status in (200,):
            decision.response.add("Date", gb_local_time(now_us(), self.settings.display_timezone))
        return decision.response

    async def _registered(self, reg: Registration) -> None:
        mono, stamp = time.monotonic(), now_us()
        old = self.sessions.get(reg.device_id)
        if reg.expires == 0:
            self.sessions.pop(reg.device_id, None)
            reason = "device unregistered (REGISTER with Expires: 0)"
            await self._db(self.devices.update, reg.device_id, state="unregistered", reason=reason, expires_us=0)
            self._notify(reg.device_id, "unregistered", reason)
            return
        fresh = old is None or not old.online or old.peer != reg.peer
        note = ""
        if old is not None and old.peer != reg.peer:
            note = f"source address changed from {old.peer} to {reg.peer}"
            log.info("device %s: %s", reg.device_id, note)
        session = old or DeviceSession(reg.device_id, reg.peer, reg.contact, mono + reg.expires, mono)
        session.peer, session.contact, session.expires_at = reg.peer, reg.contact, mono + reg.expires
        if fresh:
            session.registered_at = mono
        session.online = True
        self.sessions[reg.device_id] = session
        changes: dict[str, Any] = dict(state="online", transport=reg.peer.transport, source_host=reg.peer.host,
                                       source_port=reg.peer.port, contact=reg.contact,
                                       expires_us=stamp + reg.expires * 1_000_000,
                                       worker_id=self.settings.worker_id)
        if fresh:
            changes.update(registered_us=stamp, reason=note or "registered")
        await self._db(self.devices.update, reg.device_id, **changes)
        if fresh:
            self._notify(reg.device_id, "online", note or "registered")
            if self.query_on_register:
                self._spawn(self.refresh(reg.device_id))

    # -- MESSAGE ---------------------------------------------------------------------------

    async def _on_message(self, inc: Incoming) -> SipResponse:
        req = inc.request
        device_id = req.from_.user
        route = self.message_routes.get(device_id)
        if route is not None:
            return await route(inc)
        session = self.sessions.get(device_id)
        try:
            doc = read_body(req.body, req.charset)
        except ManscdpError as exc:
            if session is not None:
                self._spawn(self._note_refusal(device_id, f"MESSAGE body refused: {exc}", keep_state=True))
            return inc.response(400, f"Bad Request ({str(exc)[:80]})")
        if session is None:
            # Not registered (or unregistered): 403 makes a device register again.
            return inc.response(403, "Forbidden (not registered)")
        if doc.note:
            self._spawn(self._db(self.devices.merge_json, device_id, "status", {"encoding_note": doc.note}))
        if doc.kind == "Notify" and doc.cmd_type == "Keepalive":
            await self._keepalive(session, inc.peer)
            return inc.response(200)
        if doc.kind == "Response":
            self._spawn(self._on_response(device_id, doc))
        elif doc.kind == "Notify" and doc.cmd_type in self.notify_handlers:
            self._spawn(self._call(self.notify_handlers[doc.cmd_type], device_id, doc))
        return inc.response(200)

    async def _call(self, handler: DocHandler, device_id: str, doc: Manscdp) -> None:
        result = handler(device_id, doc)
        if result is not None:
            await result

    async def _keepalive(self, session: DeviceSession, peer: Peer) -> None:
        mono = time.monotonic()
        session.keepalive.beat(mono)
        changes: dict[str, Any] = {"last_keepalive_us": now_us(),
                                   "keepalive_interval_s": session.keepalive.interval}
        if peer != session.peer:
            # A NAT rebinding (new source port): requests must follow the device.
            changes.update(source_host=peer.host, source_port=peer.port, transport=peer.transport,
                           reason=f"source address changed from {session.peer} to {peer} (keepalive)")
            session.peer = peer
        if not session.online:
            session.online = True
            changes.update(state="online", reason="keepalive resumed")
            self._notify(session.device_id, "online", "keepalive resumed")
        if len(changes) == 2:
            # The usual case (only the time and the interval change): written with every other
            # device's in one transaction by the watch loop, at most monitor_interval later.
            self._beats[session.device_id] = (changes["last_keepalive_us"], changes["keepalive_interval_s"])
        else:
            self._beats.pop(session.device_id, None)
            await self._db(self.devices.update, session.device_id, **changes)

    async def _on_response(self, device_id: str, doc: Manscdp) -> None:
        if doc.cmd_type == "Catalog":
            result = self.catalogs.add(device_id, doc)
            if result is not None:
                await self._catalog_done(result)
            return
        if doc.cmd_type == "DeviceInfo":
            await self._db(self.devices.update, device_id, name=doc.text("DeviceName")[:128],
                           manufacturer=doc.text("Manufacturer")[:64], model=doc.text("Model")[:64],
                           firmware=doc.text("Firmware")[:64])
        elif doc.cmd_type == "DeviceStatus":
            status = {tag: doc.text(tag) for tag in ("Result", "Online", "Status", "Encode", "Record", "DeviceTime")
                      if doc.text(tag)}
            await self._db(self.devices.merge_json, device_id, "status", {"device_status": status,
                                                                          "device_status_us": now_us()})
        elif doc.cmd_type in self.response_handlers:
            await self._call(self.response_handlers[doc.cmd_type], device_id, doc)
        waiter = self._waiters.pop((device_id, doc.sn if doc.sn is not None else -1), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(doc)

    async def _catalog_done(self, result: CatalogResult) -> None:
        items = list(result.items.values())
        report = await self._db(sync_channels, self.registry, result.device_id, items,
                                auto_enable=self.settings.gb_auto_enable)
        channels = await self._db(lambda: sum(1 for c in self.registry.cameras()
                                              if c.gb_device_id == result.device_id))
        catalog = {"sn": result.sn, "sum_num": result.sum_num, "received": len(items), "messages": result.messages,
                   "complete": result.complete, "summary": result.summary, "skipped": result.skipped[:50],
                   "sync": report.as_dict(), "time_us": now_us()}
        await self._db(self.devices.update, result.device_id, channels=channels, catalog=catalog)
        log.info("device %s: %s", result.device_id, result.summary)
        waiter = self._waiters.pop((result.device_id, result.sn), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    # -- queries ---------------------------------------------------------------------------

    async def query(self, device_id: str, cmd_type: str, fields: dict[str, str] | None = None, *,
                    timeout: float | None = None) -> Any:
        """Send a Query and wait for its answer: a ``Manscdp`` (a ``CatalogResult`` for Catalog,
        possibly incomplete: what arrived before the timeout)."""
        session = self.sessions.get(device_id)
        if session is None:
            raise GbError(f"device {device_id} is not registered; it must REGISTER before it can be queried")
        sn = next(self._sn)
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[(device_id, sn)] = waiter
        try:
            resp = await self.message(device_id, build("Query", cmd_type, sn, device_id, fields))
            if resp.status >= 300:
                raise GbError(f"device {device_id}: {cmd_type} query answered {resp.status} {resp.reason}")
            wait = timeout or (self.catalogs.max_wait + self.monitor_interval * 2 if cmd_type == "Catalog"
                               else self.query_timeout)
            try:
                return await asyncio.wait_for(asyncio.shield(waiter), wait)
            except asyncio.TimeoutError:
                raise GbError(f"device {device_id}: no {cmd_type} answer within {wait:.0f} s") from None
        finally:
            self._waiters.pop((device_id, sn), None)

    async def message(self, device_id: str, body: bytes) -> SipResponse:
        """Send a MANSCDP MESSAGE to a registered device (queries, DeviceControl)."""
        session = self.sessions.get(device_id)
        if session is None:
            raise GbError(f"device {device_id} is not registered")
        return await self.endpoint.request("MESSAGE", session.peer, self.device_uri(device_id),
                                           body=body, content_type=MANSCDP_TYPE)

    async def refresh(self, device_id: str) -> dict[str, str]:
        """Catalog, DeviceInfo and DeviceStatus, as after a registration; what failed, by query."""
        failures: dict[str, str] = {}
        for cmd in ("Catalog", "DeviceInfo", "DeviceStatus"):
            try:
                await self.query(device_id, cmd)
            except (GbError, ConnectionError, OSError) as exc:
                failures[cmd] = str(exc)
                log.warning("device %s: %s", device_id, exc)
        if failures:
            await self._db(self.devices.merge_json, device_id, "status", {"query_failures": failures})
        return failures

    # -- watching --------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.monitor_interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watch must keep running
                log.exception("GB/T 28181 device watch failed")

    async def check(self) -> None:
        """Write the keepalives that came, close catalogs that timed out, and mark silent or
        expired devices offline."""
        beats, self._beats = self._beats, {}
        await self._db(self.devices.touch_keepalives, beats)
        for result in self.catalogs.expire():
            await self._catalog_done(result)
        mono = time.monotonic()
        for session in list(self.sessions.values()):
            if not session.online:
                continue
            reason = session.keepalive.overdue(mono, session.registered_at)
            if mono > session.expires_at:
                reason = "registration expired without a new REGISTER"
            if reason is None:
                continue
            session.online = False
            log.warning("device %s offline: %s", session.device_id, reason)
            await self._db(self.devices.update, session.device_id, state="offline", reason=reason)
            self._notify(session.device_id, "offline", reason)
            if mono > session.expires_at:
                self.sessions.pop(session.device_id, None)


class GbServer:
    """A ``GbService`` on its own event loop thread."""

    def __init__(self, service: GbService) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="gb28181-sip", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        # The media side's one GbLink (port pool, SSRC sequence): ingest.gb28181.media.session.media_link.
        self.media_link: Any = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.service.start())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        self._ready.wait(timeout)
        if self._error is not None:
            raise RuntimeError(f"GB/T 28181 SIP server could not start on {self.service.settings.gb_sip_bind}: "
                               f"{self._error}") from self._error

    def call(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def close(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.call(self.service.close()).result(timeout)
        except Exception:  # noqa: BLE001 - closing anyway
            log.exception("GB/T 28181 SIP server did not close cleanly")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
