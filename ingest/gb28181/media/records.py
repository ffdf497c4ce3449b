"""RecordInfo: what a GB/T 28181 device has recorded of one channel (its own archive).

``RecordInfoClient.query`` sends ``<Query><CmdType>RecordInfo</CmdType>`` for a channel and a
time range (GB local time, in ``display_timezone``) and aggregates the ``Response`` MESSAGEs by
SN until ``SumNum`` items have arrived: devices split a long list into many MESSAGEs (and
Hikvision NVRs send one item per MESSAGE). On timeout it keeps what arrived and says so
(``complete = False``). The answers arrive through ``GbService.response_handlers["RecordInfo"]``.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from config.times import gb_local_time, iso_utc, parse_gb_local_time
from ingest.gb28181.manscdp import Manscdp, build

# Our SNs for RecordInfo start far above the service's own counter so the two never meet.
_SN = itertools.count(7_000_000)


@dataclass(frozen=True)
class RecordItem:
    """One recording the device lists: times in UTC microseconds."""

    channel_id: str
    name: str
    start_us: int
    end_us: int
    file_path: str = ""
    address: str = ""
    type: str = ""
    secrecy: str = "0"

    def as_dict(self) -> dict[str, object]:
        return {"channel_id": self.channel_id, "name": self.name, "start": iso_utc(self.start_us),
                "end": iso_utc(self.end_us), "start_us": self.start_us, "end_us": self.end_us,
                "file_path": self.file_path, "address": self.address, "type": self.type, "secrecy": self.secrecy}


@dataclass
class RecordList:
    channel_id: str
    sum_num: int | None = None
    items: list[RecordItem] = field(default_factory=list)
    messages: int = 0
    complete: bool = False
    skipped: int = 0  # items with times we could not read

    def as_dict(self) -> dict[str, object]:
        return {"channel_id": self.channel_id, "sum_num": self.sum_num, "received": len(self.items),
                "messages": self.messages, "complete": self.complete, "skipped": self.skipped,
                "items": [i.as_dict() for i in sorted(self.items, key=lambda i: i.start_us)]}


class RecordInfoClient:
    """Installs itself as the service's RecordInfo response handler."""

    def __init__(self, service, zone: str) -> None:  # type: ignore[no-untyped-def]
        self.service = service
        self.zone = zone
        self._pending: dict[tuple[str, int], tuple[RecordList, asyncio.Event]] = {}
        service.response_handlers["RecordInfo"] = self._on_response

    async def query(self, device_id: str, channel_id: str, start_us: int, end_us: int, *,
                    timeout: float = 10.0) -> RecordList:
        sn = next(_SN)
        result = RecordList(channel_id)
        done = asyncio.Event()
        self._pending[(device_id, sn)] = (result, done)
        fields = {"StartTime": gb_local_time(start_us, self.zone)[:19],
                  "EndTime": gb_local_time(end_us, self.zone)[:19], "Secrecy": "0", "Type": "all"}
        try:
            resp = await self.service.message(device_id, build("Query", "RecordInfo", sn, channel_id, fields))
            if resp.status >= 300:
                raise RuntimeError(f"device {device_id}: RecordInfo query answered {resp.status} {resp.reason}")
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except asyncio.TimeoutError:
                pass  # keep what arrived; complete stays False
            return result
        finally:
            self._pending.pop((device_id, sn), None)

    def _on_response(self, device_id: str, doc: Manscdp) -> None:
        entry = self._pending.get((device_id, doc.sn if doc.sn is not None else -1))
        if entry is None:
            return
        result, done = entry
        result.messages += 1
        if doc.int("SumNum") is not None:
            result.sum_num = doc.int("SumNum")
        for item in doc.root.iterfind("RecordList/Item"):
            def text(tag: str, item=item) -> str:  # type: ignore[no-untyped-def]
                return (item.findtext(tag) or "").strip()

            try:
                start = parse_gb_local_time(text("StartTime"), self.zone)
                end = parse_gb_local_time(text("EndTime"), self.zone)
            except ValueError:
                result.skipped += 1
                continue
            result.items.append(RecordItem(text("DeviceID") or result.channel_id, text("Name"), start, end,
                                           text("FilePath"), text("Address"), text("Type"), text("Secrecy") or "0"))
        if result.sum_num is not None and len(result.items) + result.skipped >= result.sum_num:
            result.complete = True
            done.set()
