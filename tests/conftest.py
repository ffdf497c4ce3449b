"""Shared pytest set-up: fixture plugins only. Add your plugin module to the list."""

import os

# pytest-xdist starts its workers with COLUMNS=80, and rich fixes a console's width from COLUMNS
# when the console is made (at import): CLI tables would wrap in a worker where they do not in a
# terminal. Tests that need a width set COLUMNS themselves.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)

pytest_plugins = [
    "tests.support.cameras",
    "tests.support.vlc_camera",
    "tests.support.s3server",
    "tests.support.databases",
    "tests.support.soak",
    "tests.faults.plugin",
]
