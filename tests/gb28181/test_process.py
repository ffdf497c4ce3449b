"""``sharpeyes run`` with GB_SIP_BIND set: a SIPp device registers with GB_PASSWORD, its channels
appear (disabled: GB_AUTO_ENABLE=false), and the API shows it online; the process stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.gb28181.conftest import CHANNELS, DEVICE
from tests.gb28181.sipp_device import catalog_scenario, register_scenario
from tests.support.sipp import free_udp_tcp_port, needs_sipp, run_sipp

pytestmark = needs_sipp


def _http(url: str, body: dict[str, str] | None = None, token: str | None = None) -> dict:  # type: ignore[type-arg]
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def test_run_with_gb_sip_bind(tmp_path: Path) -> None:
    sip_port, http_port = free_udp_tcp_port(), free_udp_tcp_port()
    env = {**os.environ, "SHARPEYES_DATA_DIR": str(tmp_path), "SHARPEYES_HTTP_BIND": f"127.0.0.1:{http_port}",
           "SHARPEYES_RTSP_BIND": f"127.0.0.1:{free_udp_tcp_port()}", "SHARPEYES_GB_SIP_BIND": f"127.0.0.1:{sip_port}",
           "SHARPEYES_GB_PASSWORD": "County-default-1", "SHARPEYES_GB_AUTO_ENABLE": "false",
           "SHARPEYES_ADMIN_PASSWORD": "Admin-password-1", "SHARPEYES_SNAPSHOTS": "false", "SHARPEYES_MOTION": "false",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("SHARPEYES_SECRET_KEY", None)
    env.pop("SHARPEYES_DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "sharpeyes.cli", "region", "add", "340102", "蜀山区"], env=env, check=True,
                   capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "sharpeyes.cli", "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                _http(f"{base}/api/ping")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "sharpeyes run did not come up"
                time.sleep(0.2)
        sipp = run_sipp(["-au", DEVICE, "-ap", "County-default-1", "-m", "1", "-timeout", "30", "-timeout_error",
                         f"127.0.0.1:{sip_port}"], scenario=register_scenario(DEVICE, keepalives=3),
                        ooc=catalog_scenario(DEVICE, CHANNELS))
        assert sipp.wait(40) == 0, sipp.log
        token = _http(f"{base}/api/auth/token", {"username": "admin", "password": "Admin-password-1"})["access_token"]
        body = _http(f"{base}/api/gb/devices", token=token)
        assert body["enabled"] and body["server"]["here"]
        (dev,) = body["devices"]
        assert dev["device_id"] == DEVICE and dev["state"] == "online" and dev["channels"] == 3
        cams = _http(f"{base}/api/cameras", token=token)
        cams = cams if isinstance(cams, list) else cams.get("cameras", cams)
        gb = [c for c in cams if c["source"] == "gb28181"]
        assert len(gb) == 3 and not any(c["enabled"] for c in gb)  # GB_AUTO_ENABLE=false
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert proc.returncode == 0, out
    assert "GB/T 28181: SIP server" in out
