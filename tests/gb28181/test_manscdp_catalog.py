"""MANSCDP decoding, Catalog aggregation, keepalive intervals and region placement (no network)."""

from __future__ import annotations

import pytest

from config.cameras import Region
from ingest.gb28181.catalog import CatalogAssembler
from ingest.gb28181.channels import resolve_region
from ingest.gb28181.keepalive import KeepaliveTracker
from ingest.gb28181.manscdp import ManscdpError, build, read_body

DEV = "34020000001320000001"


def _catalog(sn: int, sum_num: int, ids: list[str], encoding: str = "GB2312", declare: str | None = None) -> bytes:
    items = "".join(f"<Item><DeviceID>{i}</DeviceID><Name>通道{n}</Name><CivilCode>340102</CivilCode></Item>"
                    for n, i in enumerate(ids))
    decl = f'<?xml version="1.0" encoding="{declare or encoding}"?>'
    return (f"{decl}<Response><CmdType>Catalog</CmdType><SN>{sn}</SN><DeviceID>{DEV}</DeviceID>"
            f"<SumNum>{sum_num}</SumNum><DeviceList Num=\"{len(ids)}\">{items}</DeviceList></Response>"
            ).encode(encoding)


@pytest.mark.parametrize("encoding", ["GB2312", "GB18030", "UTF-8", "GBK"])
def test_declared_encodings(encoding: str) -> None:
    doc = read_body(_catalog(7, 1, ["34010200001310000001"], encoding))
    assert (doc.kind, doc.cmd_type, doc.sn, doc.device_id) == ("Response", "Catalog", 7, DEV)
    assert doc.text("DeviceList/Item/Name") == "通道0" and doc.note == ""


def test_gb2312_declared_with_a_gbk_only_character_still_reads() -> None:
    body = '<?xml version="1.0" encoding="GB2312"?><Notify><CmdType>Keepalive</CmdType><SN>1</SN>' \
           '<DeviceID>x</DeviceID><Info>堃</Info></Notify>'
    doc = read_body(body.encode("gb18030"))
    assert doc.text("Info") == "堃"


def test_undeclared_and_misdeclared_encodings_are_noted() -> None:
    raw = _catalog(1, 1, ["34010200001310000001"]).replace(b'<?xml version="1.0" encoding="GB2312"?>', b"")
    doc = read_body(raw)
    assert doc.text("DeviceList/Item/Name") == "通道0" and "declares no encoding" in doc.note
    doc = read_body(_catalog(1, 1, ["34010200001310000001"], "GB2312", declare="UTF-8"))
    assert doc.text("DeviceList/Item/Name") == "通道0" and "declares UTF-8 but is not" in doc.note
    doc = read_body(_catalog(1, 1, ["34010200001310000001"]).replace(b' encoding="GB2312"', b""), "GB2312")
    assert doc.note == "" and doc.encoding == "gb18030"


@pytest.mark.parametrize("body, reason", [
    (b"", "not XML"), (b"\xff\xfe\x00garbage", "no encoding we read"), (b"<Query><SN>1</SN></Query>", "no CmdType"),
    (b"<a>" * 40_000, "limit"),
])
def test_bad_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(ManscdpError, match=reason):
        read_body(body)


def test_entities_are_not_expanded() -> None:
    xxe = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           b"<Query><CmdType>Catalog</CmdType><SN>1</SN><DeviceID>&e;</DeviceID></Query>")
    assert "root:" not in read_body(xxe).device_id


def test_build_round_trips_in_gb2312() -> None:
    body = build("Query", "Catalog", 42, DEV, {"Name": "东门"})
    assert body.startswith(b'<?xml version="1.0" encoding="GB2312"?>') and "东门".encode("gb2312") in body
    doc = read_body(body)
    assert (doc.cmd_type, doc.sn, doc.text("Name")) == ("Catalog", 42, "东门")


def test_catalog_aggregates_by_sn_across_messages_and_times_out_keeping_what_arrived() -> None:
    now = [0.0]
    asm = CatalogAssembler(idle_timeout=5, max_wait=60, clock=lambda: now[0])
    ids = [f"3401020000131000000{i}" for i in range(1, 4)]
    assert asm.add(DEV, read_body(_catalog(9, 3, ids[:1]))) is None
    assert asm.add(DEV, read_body(_catalog(8, 2, ids[:1]))) is None  # another SN, kept apart
    assert asm.add(DEV, read_body(_catalog(9, 3, ids[1:2]))) is None
    assert asm.add(DEV, read_body(_catalog(9, 3, ids[1:2]))) is None  # a repeated item counts once
    done = asm.add(DEV, read_body(_catalog(9, 3, ids[2:])))
    assert done is not None and done.complete and sorted(done.items) == ids and done.messages == 4
    now[0] = 6.0
    expired = asm.expire()
    assert [r.sn for r in expired] == [8] and not expired[0].complete and len(expired[0].items) == 1
    assert "SumNum 2 but 1 item(s) arrived" in expired[0].reason and asm.pending(DEV) == 0


def test_keepalive_interval_is_learned_and_tolerates_an_odd_beat() -> None:
    ka = KeepaliveTracker()
    assert ka.interval == 60 and ka.overdue(100.0, since=0.0) is None and ka.overdue(181.0, since=0.0)
    for t in (0, 10, 20, 30):
        ka.beat(float(t))
    assert ka.interval == 10 and ka.overdue(59.0, since=0) is None
    ka.beat(31.0)  # an early, odd heartbeat does not shrink the interval
    assert ka.interval == 10
    reason = ka.overdue(62.0, since=0)
    assert reason is not None and "3 missed intervals of 10 s" in reason


def test_region_is_the_nearest_registered_parent() -> None:
    regions = [Region(code="3401", name="合肥"), Region(code="340102", name="蜀山区", parent="3401"),
               Region(code="34010203", name="南七村", parent="340102")]
    assert resolve_region("34010203", DEV, regions) == "34010203"
    assert resolve_region("34010299", DEV, regions) == "340102"
    assert resolve_region("3401990000", DEV, regions) == "3401"
    assert resolve_region("", "34010203001320000001", regions) == "34010203"  # the device's own division
    assert resolve_region("11", "11000000001320000001", regions) == "3401"    # nothing matches: the top
    assert resolve_region("11", DEV, []) is None
