"""Shared pytest set-up: fixture plugins only. Add your plugin module to the list."""

pytest_plugins = [
    "tests.support.cameras",
    "tests.support.vlc_camera",
    "tests.support.s3server",
    "tests.support.databases",
    "tests.support.soak",
    "tests.faults.plugin",
]
