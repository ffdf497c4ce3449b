"""The console's static routes: the page, its modules, no way out of streams/console/web, one key set per language."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from streams.console.routes import WEB_DIR, install_console


def _client() -> TestClient:
    app = FastAPI()
    install_console(app)
    return TestClient(app)


def test_index_and_modules_are_served() -> None:
    client = _client()
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/web/app.js">' in r.text
    for path in re.findall(r'from "\./([\w/.-]+\.js)"', (WEB_DIR / "app.js").read_text()):
        js = client.get(f"/web/{path}")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript"), path
    assert client.get("/web/style.css").headers["content-type"].startswith("text/css")


def test_nothing_outside_the_web_directory() -> None:
    client = _client()
    for path in ("/web/../console.py", "/web/%2e%2e/console.py", "/web/..%2Fconsole.py", "/web/nope.js", "/web/i18n"):
        assert client.get(path).status_code == 404, path


def test_every_catalogue_has_the_same_keys() -> None:
    def keys(name: str) -> set[str]:
        return set(re.findall(r'^  "([^"]+)":', (WEB_DIR / "i18n" / name).read_text(), re.M))
    zh, en = keys("zh-CN.js"), keys("en.js")
    assert zh and zh == en, zh ^ en
    used = set()
    for js in WEB_DIR.glob("*.js"):
        used |= set(re.findall(r'\bt\("([a-z_]+\.[a-z_]+)"', js.read_text()))
    assert used <= zh, used - zh  # every literal key the code asks for exists
