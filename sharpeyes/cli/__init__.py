"""The ``sharpeyes`` command line: one module per command group, ``main`` the entry point."""

from sharpeyes.cli.main import app, main

__all__ = ["app", "main"]
