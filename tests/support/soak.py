"""pytest plugin: options of the opt-in soak tests (``-m slow``)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-minutes", default="10", help="API fuzz soak (tests/soak): minutes to spend")
