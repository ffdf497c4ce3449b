"""Catalog answers: items read from MANSCDP, and aggregation by SN up to SumNum.

A device answers one Catalog query with any number of MESSAGEs (Hikvision NVRs send one
item per MESSAGE), each carrying ``SumNum`` (the total) and a ``DeviceList`` of items.
``CatalogAssembler`` collects them per (device, SN) until SumNum items have arrived, or
until no new MESSAGE came for ``idle_timeout`` seconds (or ``max_wait`` in all): then it
keeps what arrived and says how many are missing. Every item is checked: a DeviceID that
is not 20 digits is skipped with the reason; only video channels (type 131/132) become
cameras, directory entries (business groups, virtual organisations) and others are
listed as skipped, not refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from config.gb28181 import CAMERA_TYPE_CODES, gb_type, is_gb_code
from ingest.gb28181.manscdp import Manscdp

MAX_SUM_NUM = 20_000
MAX_OPEN_CATALOGS = 8  # per device: more open SNs than this and the oldest is closed


@dataclass(frozen=True)
class CatalogItem:
    device_id: str
    name: str
    civil_code: str
    parent_id: str
    manufacturer: str
    model: str
    status: str  # ON / OFF as the device says

    @property
    def is_video_channel(self) -> bool:
        return gb_type(self.device_id) in CAMERA_TYPE_CODES


def read_items(doc: Manscdp) -> tuple[list[CatalogItem], list[str]]:
    """The valid items of one Catalog MESSAGE, and a reason for each item skipped as invalid."""
    items, skipped = [], []
    for el in doc.root.iterfind("DeviceList/Item"):
        device_id = (el.findtext("DeviceID") or "").strip()
        if not is_gb_code(device_id):
            skipped.append(f"item DeviceID {device_id[:40]!r}: not a 20-digit GB/T 28181 id; skipped")
            continue
        items.append(CatalogItem(
            device_id=device_id,
            name=(el.findtext("Name") or "").strip()[:128] or device_id,
            civil_code=(el.findtext("CivilCode") or "").strip()[:32],
            parent_id=(el.findtext("ParentID") or "").strip()[:64],
            manufacturer=(el.findtext("Manufacturer") or "").strip()[:64],
            model=(el.findtext("Model") or "").strip()[:64],
            status=(el.findtext("Status") or "").strip()[:16],
        ))
    return items, skipped


@dataclass
class CatalogResult:
    device_id: str
    sn: int
    sum_num: int
    items: dict[str, CatalogItem] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    messages: int = 0
    complete: bool = False
    reason: str = ""  # why it ended incomplete

    @property
    def summary(self) -> str:
        text = f"catalog SN {self.sn}: {len(self.items)} of {self.sum_num} items in {self.messages} message(s)"
        if self.skipped:
            text += f", {len(self.skipped)} invalid item(s) skipped"
        return text + (f"; {self.reason}" if self.reason else "")


@dataclass
class _Open:
    result: CatalogResult
    started: float
    last: float


class CatalogAssembler:
    """Collects Catalog MESSAGEs; ``add`` returns a result when one is complete, ``expire``
    returns those that timed out (incomplete, with what arrived)."""

    def __init__(self, *, idle_timeout: float = 5.0, max_wait: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_timeout, self.max_wait, self._clock = idle_timeout, max_wait, clock
        self._open: dict[tuple[str, int], _Open] = {}

    def add(self, device_id: str, doc: Manscdp) -> CatalogResult | None:
        sn = doc.sn if doc.sn is not None else -1
        sum_num = doc.int("SumNum")
        key = (device_id, sn)
        now = self._clock()
        entry = self._open.get(key)
        if entry is None:
            mine = sorted((k for k in self._open if k[0] == device_id), key=lambda k: self._open[k].started)
            while len(mine) >= MAX_OPEN_CATALOGS:
                self._open.pop(mine.pop(0))
            total = min(sum_num if sum_num is not None else 0, MAX_SUM_NUM)
            entry = _Open(CatalogResult(device_id, sn, total), now, now)
            self._open[key] = entry
        result = entry.result
        if sum_num is not None and result.sum_num == 0:
            result.sum_num = min(sum_num, MAX_SUM_NUM)
        items, skipped = read_items(doc)
        result.messages += 1
        result.skipped += skipped
        for item in items:
            if len(result.items) < MAX_SUM_NUM:
                result.items[item.device_id] = item
        entry.last = now
        if len(result.items) + len(result.skipped) >= result.sum_num:
            result.complete = True
            del self._open[key]
            return result
        return None

    def expire(self) -> list[CatalogResult]:
        now = self._clock()
        done = []
        for key, entry in list(self._open.items()):
            idle, age = now - entry.last, now - entry.started
            if idle >= self.idle_timeout or age >= self.max_wait:
                r = entry.result
                r.reason = (f"SumNum {r.sum_num} but {len(r.items) + len(r.skipped)} item(s) arrived; "
                            f"no more within {idle:.0f} s, keeping what arrived")
                done.append(r)
                del self._open[key]
        return done

    def pending(self, device_id: str) -> int:
        return sum(1 for k in self._open if k[0] == device_id)
