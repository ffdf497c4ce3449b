"""The soak tests reuse the auth tests' world (an app, a region tree, cameras, a user per role)."""

from tests.auth.conftest import world  # noqa: F401 - the fixture, shared
