"""The web console in Debian's headless Chromium against the whole system (tests/browser/conftest.py).

Each test runs one Node scenario (playwright-core) and checks what it reports. The
tests run in file order: the investigator test comes last, so the cameras have
recorded for a while before it makes its gap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


from tests.browser.conftest import ARTIFACTS, ROOT, ConsoleWorld


def test_viewer_four_tile_wall_plays_every_tile(console_world: ConsoleWorld) -> None:
    r = console_world.run("wall_viewer.mjs")
    assert len(r["tiles"]) == 4
    assert all(t["frames"] > 0 for t in r["tiles"]), r["tiles"]
    assert all(t["state"] == "live" for t in r["tiles"]), r["tiles"]
    assert all(t["mode"] == "webrtc" for t in r["tiles"]), r["tiles"]  # WHEP, not the fallback
    assert r["mse"] == ["mse"] * 4  # and the WebSocket/MSE path plays every tile as well
    # Measured, not asserted (no timed assertions): time to first picture and the badges' delay.
    print(f"\nfirst picture ms webrtc={[t['firstFrameMs'] for t in r['tiles']]} {[t['timing'] for t in r['tiles']]} "
          f"mse={r['mseFirstFrameMs']} "
          f"delays={r['delays']}")
    # The county holds cam-a, cam-b (v1), cam-c, cam-g (t1) and cam-d (t2): the first four fill the wall.
    assert len({t["camera"] for t in r["tiles"]}) == 4
    assert r["after"] == [t["camera"] for t in r["tiles"]]  # the layout survived the reload
    assert (ARTIFACTS / "wall.png").stat().st_size > 10_000


def test_township_viewer_sees_only_their_township(console_world: ConsoleWorld) -> None:
    r = console_world.run("wall_scope.mjs")
    assert "camera:cam-d" not in r["keys"] and "region:t2" not in r["keys"] and "region:v2" not in r["keys"]
    assert {"camera:cam-a", "camera:cam-b", "camera:cam-c", "camera:cam-g", "region:t1"} <= set(r["keys"])
    assert "Bridge D" not in r["treeText"] and "West Town" not in r["treeText"]
    assert "cam-d" not in r["wall"] and r["wall"][1] == "cam-a"  # the saved out-of-scope tile was dropped
    forged, unknown = r["forged"]["cam-d"], r["forged"]["cam-zz"]
    # Out of scope answers exactly like unknown: 404 (the issue says 403; the API's rule is 404, see docs/console.md).
    assert forged["camera"] == unknown["camera"] == 404
    assert forged["whep"] == unknown["whep"] == 404
    assert forged["camera_body"].replace("cam-d", "X") == unknown["camera_body"].replace("cam-zz", "X")
    assert r["scope"].strip() == "t1"


def test_operator_adds_camera_and_sees_it_live(console_world: ConsoleWorld) -> None:
    r = console_world.run("operator_add.mjs", NEW_CAMERA_URL=console_world.spare.url("/new"))
    assert "640×360" in r["probe"], r["probe"]
    assert r["liveAfterMs"] < 15_000
    assert console_world.registry.camera("cam-new") is not None
    errors = r["importErrors"]
    assert [(e[0], e[1]) for e in errors] == [("2", "BAD ID"), ("3", "cam-imp3")], errors  # row, camera id, message
    assert "rtsp://" in errors[1][2]
    assert console_world.registry.camera("cam-imp1") is None  # all or nothing
    assert (ARTIFACTS / "health.png").stat().st_size > 10_000


def _first_run_seconds(world: ConsoleWorld, camera: str) -> float:
    now_ms = int(time.time() * 1000)
    tl = world.get(f"/api/cameras/{camera}/recordings?start={now_ms - 3_600_000}&end={now_ms + 60_000}").json()
    return tl["runs"][0]["duration_ms"] / 1000 if tl["runs"] else 0.0


def test_investigator_sees_gap_seeks_and_exports_a_verified_clip(console_world: ConsoleWorld) -> None:
    world = console_world
    # Record at least ~36 s on cam-g, stop its camera for a gap, and record again after it.
    deadline = time.monotonic() + 90
    while _first_run_seconds(world, "cam-g") < 36 and time.monotonic() < deadline:
        time.sleep(1)
    world.gap_camera.stop()
    time.sleep(6)  # the outage itself: real time the camera is away
    world.gap_camera.start()
    world.wait_recording("cam-g", timeout=30)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        now_ms = int(time.time() * 1000)
        tl = world.get(f"/api/cameras/cam-g/recordings?start={now_ms - 3_600_000}&end={now_ms + 60_000}").json()
        if len(tl["runs"]) >= 2 and tl["gaps"]:
            break
        time.sleep(1)
    r = world.run("investigator.mjs", CAMERA="cam-g")
    assert r["gaps"] and all(g["reason"] for g in r["gaps"])
    assert len(r["runs"]) >= 2
    assert r["stepped"] > 0
    in_ms, out_ms = r["marks"]
    assert 10 <= (out_ms - in_ms) / 1000 <= 31
    assert Path(r["snapFile"]).read_bytes()[:2] == b"\xff\xd8"
    verify = subprocess.run(
        [sys.executable, "-m", "sharpeyes.cli", "verify", r["clipFile"], r["manifestFile"]],
        cwd=ROOT, env={**os.environ, "SHARPEYES_DATA_DIR": str(world.data_dir), "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    manifest = json.loads(Path(r["manifestFile"]).read_text())
    assert manifest["camera"] if "camera" in manifest else True
    assert r["listed"] >= 1
    assert (ARTIFACTS / "playback.png").stat().st_size > 10_000


def test_admin_finds_the_export_in_the_audit_table(console_world: ConsoleWorld) -> None:
    r = console_world.run("admin_audit.mjs")
    assert r["rows"], "no export rows"
    assert all(row[1] == "investigator" and row[3] == "export" for row in r["rows"])
    assert any(row[5] == "cam-g" for row in r["rows"])


def test_offline_tile_says_why_and_recovers_by_itself(console_world: ConsoleWorld) -> None:
    world = console_world
    world.gap_camera.stop()
    # The camera comes back while the browser watches; the scenario waits for the tile to be live again.
    timer = threading.Timer(12.0, world.gap_camera.start)
    timer.start()
    try:
        r = world.run("wall_recover.mjs", CAMERA="cam-g")
    finally:
        timer.join()
    assert r["badge"] == "offline"
    assert "why:" in r["why"] and "retry in" in r["why"], r["why"]
    # The reason is the session's own last_error (connection refused while the server is down).
    assert "cam-g" in r["why"] or "refused" in r["why"] or "offline" in r["why"], r["why"]


def test_health_fleet_numbers_behind_the_health_page(console_world: ConsoleWorld) -> None:
    """``GET /api/health/fleet`` on the recorded world: cam-g (stopped twice above) is the worst
    covered and has reconnects; storage rolls up from villages to the county; scope applies."""
    r = console_world.get("/api/health/fleet?hours=24", user="operator")
    assert r.status_code == 200, r.text
    body = r.json()
    cams = {c["camera_id"]: c for c in body["cameras"]}
    assert body["cameras"][0]["camera_id"] == "cam-g", body["cameras"]
    assert cams["cam-g"]["reconnects"] >= 2 and cams["cam-g"]["coverage"] < cams["cam-a"]["coverage"]
    assert cams["cam-a"]["coverage"] > 0.5  # recorded since it was first seen, minus start-up
    assert sum(h["count"] for h in body["reconnects_per_hour"]) >= cams["cam-g"]["reconnects"]
    storage = {s["region"]: s for s in body["storage"]}
    assert storage["county"]["bytes"] == storage["t1"]["bytes"] + storage["t2"]["bytes"] > 0
    assert storage["t1"]["bytes"] > storage["v1"]["bytes"] > 0
    assert console_world.get("/api/health/fleet", user="viewer").status_code == 403
