"""The GB/T 28181 settings: names, defaults, validation, env and YAML (upper- or lower-case keys)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import Settings


def test_defaults_are_off_and_valid() -> None:
    s = Settings()
    assert s.gb_sip_bind == "" and s.gb_auto_enable is True and s.gb_rtp_port_range == (30000, 30999)
    assert len(s.gb_id) == 20 and len(s.gb_domain) == 10 and s.gb_password == "" and s.gb_media_host == ""


def test_env_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARPEYES_GB_SIP_BIND", "0.0.0.0:5060")
    monkeypatch.setenv("SHARPEYES_GB_AUTO_ENABLE", "false")
    cfg = tmp_path / "s.yaml"
    cfg.write_text("GB_ID: '34010000002000000001'\ngb_domain: '3401000000'\nGB_RTP_PORTS: 40000-40099\n"
                   "GB_MEDIA_HOST: 203.0.113.5\n", encoding="utf-8")
    monkeypatch.setenv("SHARPEYES_CONFIG", str(cfg))
    s = Settings()
    assert (s.gb_sip_bind, s.gb_auto_enable, s.gb_id, s.gb_domain) == ("0.0.0.0:5060", False,
                                                                       "34010000002000000001", "3401000000")
    assert s.gb_rtp_port_range == (40000, 40099) and s.gb_media_host == "203.0.113.5"


@pytest.mark.parametrize("field, value, message", [
    ("gb_sip_bind", "5060", "host:port"), ("gb_id", "3402", "20 digits"), ("gb_domain", "34020000001", "10 digits"),
    ("gb_rtp_ports", "30999-30000", "FIRST-LAST"), ("gb_rtp_ports", "80-90", "FIRST-LAST"),
])
def test_bad_values_say_what_to_write(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})
