"""pytest plugin for the fault suite: ``--soak`` lengthens every fault window."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="fault suite: hold each fault (store down, camera down) for minutes, not seconds")


@pytest.fixture
def fault_window(pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """``fault_window(short, soak)``: seconds to hold a fault in this run."""
    soak = bool(pytestconfig.getoption("--soak"))
    return lambda short, long: long if soak else short
