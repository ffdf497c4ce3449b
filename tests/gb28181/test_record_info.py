"""RecordInfo against a SIPp device: the device's recordings of a channel, split over two GB2312
MESSAGEs (SumNum 3), aggregated by SN; a list that stops short is returned as incomplete."""

from __future__ import annotations

import time

from config.times import parse_time
from ingest.gb28181.media.records import RecordInfoClient
from tests.gb28181.conftest import CHANNELS, DEVICE, Gb
from tests.gb28181.sipp_device import answering_scenario, device_message, register_scenario
from tests.support.sipp import needs_sipp, run_sipp

pytestmark = needs_sipp

CHANNEL = CHANNELS[0][0]
ZONE = "Asia/Shanghai"
RECORDS = [("2026-12-01T08:00:00", "2026-12-01T08:30:00"), ("2026-12-01T08:30:00", "2026-12-01T09:00:00"),
           ("2026-12-01T09:10:00", "2026-12-01T09:40:00")]


def records_scenario(sum_num: int, messages: list[list[tuple[str, str]]]) -> bytes:
    """Out-of-call: 200 to every MESSAGE; a RecordInfo query is answered with ``messages``."""
    replies = []
    for i, items in enumerate(messages):
        xml_items = "".join(f"<Item>\n<DeviceID>{CHANNEL}</DeviceID>\n<Name>东门一号</Name>\n"
                            f"<FilePath>/rec/{s}</FilePath>\n<Address>NVR</Address>\n<StartTime>{s}</StartTime>\n<EndTime>{e}</EndTime>\n"
                            f"<Secrecy>0</Secrecy>\n<Type>time</Type>\n</Item>\n" for s, e in items)
        body = (f'<?xml version="1.0" encoding="GB2312"?>\n<Response>\n<CmdType>RecordInfo</CmdType>\n'
                f"<SN>[$sn]</SN>\n<DeviceID>{CHANNEL}</DeviceID>\n<Name>东门一号</Name>\n<SumNum>{sum_num}</SumNum>\n"
                f'<RecordList Num="{len(items)}">\n{xml_items}</RecordList>\n</Response>')
        replies.append(device_message(DEVICE, f"rec{i}", 40 + i, body.encode("gb2312")))
    return answering_scenario("gb28181 device records", "RecordInfo", replies)


def _query(gb: Gb, ooc: bytes, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    gb.devices.add(DEVICE, "Dev-pass-1")
    sipp = run_sipp(["-au", DEVICE, "-ap", "Dev-pass-1", "-m", "1", "-timeout", "30", f"127.0.0.1:{gb.port}"],
                    scenario=register_scenario(DEVICE, keepalives=8, interval_ms=1000), ooc=ooc)
    try:
        deadline = time.monotonic() + 15
        while DEVICE not in gb.service.sessions and time.monotonic() < deadline:
            time.sleep(0.1)
        assert DEVICE in gb.service.sessions, sipp.log
        client = RecordInfoClient(gb.service, ZONE)
        start = parse_time("2026-12-01T00:00:00+08:00", "start")
        end = parse_time("2026-12-02T00:00:00+08:00", "end")
        return gb.call(client.query(DEVICE, CHANNEL, start, end, timeout=timeout))
    finally:
        sipp.stop()


def test_record_info_split_over_messages(gb: Gb) -> None:
    result = _query(gb, records_scenario(3, [RECORDS[:2], RECORDS[2:]]))
    assert result.complete and result.sum_num == 3 and result.messages == 2
    items = sorted(result.items, key=lambda i: i.start_us)
    assert [(i.start_us, i.end_us) for i in items] == [
        (parse_time(s + "+08:00", "s"), parse_time(e + "+08:00", "e")) for s, e in RECORDS]
    assert items[0].name == "东门一号" and items[0].channel_id == CHANNEL
    assert result.as_dict()["items"][0]["start"] == "2026-12-01T00:00:00.000Z"


def test_record_info_short_of_sum_num_is_incomplete(gb: Gb) -> None:
    result = _query(gb, records_scenario(5, [RECORDS[:2]]), timeout=3.0)
    assert not result.complete and result.sum_num == 5 and len(result.items) == 2
