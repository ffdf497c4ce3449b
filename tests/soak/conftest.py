"""The soak tests reuse the auth tests' world (an app, a region tree, cameras, a user per role)."""

from __future__ import annotations

import pytest

from tests.auth.conftest import world  # noqa: F401 - the fixture, shared


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-minutes", default="10", help="API fuzz soak: minutes to spend (tests/soak)")
