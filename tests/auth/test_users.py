"""UserStore: lifecycle, argon2 at rest, API keys, the first admin."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from streams.access.users import UserError, UserExists, UserNotFound, ensure_first_admin
from tests.auth.conftest import PASSWORD, World


def test_user_lifecycle(world: World) -> None:
    users = world.users
    bob = users.add("bob", "bobs password", "viewer", ["v1"])
    assert (bob.role, bob.scope, bob.disabled) == ("viewer", ("v1",), False)
    assert users.verify_password("bob", "bobs password") == bob
    assert users.verify_password("bob", "wrong password") is None
    assert users.verify_password("nobody", "bobs password") is None
    assert "bob" in [u.name for u in users.list()]

    users.passwd("bob", "a new password")
    assert users.verify_password("bob", "bobs password") is None
    assert users.verify_password("bob", "a new password") is not None

    users.disable("bob")
    assert users.get("bob").disabled  # type: ignore[union-attr]
    assert users.verify_password("bob", "a new password") is None
    users.enable("bob")
    assert users.verify_password("bob", "a new password") is not None


def test_refusals_name_the_fix(world: World) -> None:
    with pytest.raises(UserExists):
        world.users.add("viewer", PASSWORD, "viewer")
    with pytest.raises(UserError, match="role 'boss' does not exist"):
        world.users.add("x", PASSWORD, "boss")
    with pytest.raises(UserError, match="region nowhere does not exist"):
        world.users.add("x", PASSWORD, "viewer", ["nowhere"])
    with pytest.raises(UserError, match="too short"):
        world.users.add("x", "short", "viewer")
    with pytest.raises(UserNotFound):
        world.users.passwd("ghost", PASSWORD)
    assert world.users.get("x") is None


def test_passwords_stored_as_argon2_hashes(world: World) -> None:
    with world.engine.connect() as c:  # type: ignore[attr-defined]
        rows = c.execute(text("SELECT name, password_hash FROM users")).all()
    assert rows
    for _, stored in rows:
        assert stored.startswith("$argon2id$")
        assert PASSWORD not in stored


def test_api_keys_create_verify_revoke(world: World) -> None:
    key, facts = world.users.create_api_key("vms-bridge", "viewer", ["t1"], created_by="admin")
    assert key.startswith("sek_") and facts.prefix == key[: len(facts.prefix)]
    assert world.users.verify_api_key(key) == facts
    assert world.users.verify_api_key(key + "x") is None
    with world.engine.connect() as c:  # type: ignore[attr-defined]
        stored = c.execute(text("SELECT key_hash FROM api_keys")).scalar_one()
    assert key not in stored
    world.users.revoke_api_key(facts.id)
    assert world.users.verify_api_key(key) is None
    with pytest.raises(UserNotFound):
        world.users.revoke_api_key(999)


def test_first_admin(world: World) -> None:
    # The fixture already made an admin: nothing to do.
    assert ensure_first_admin(world.users, environ={}) is None


def test_first_admin_generated_or_from_env(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from storage.db.engine import open_engine
    from streams.access.users import UserStore
    from tests.auth.conftest import fast_hasher

    users = UserStore(open_engine(f"sqlite:///{tmp_path}/a.db"), hasher=fast_hasher())
    generated = ensure_first_admin(users, environ={})
    assert generated and len(generated) >= 16
    assert users.verify_password("admin", generated) is not None
    assert ensure_first_admin(users, environ={}) is None  # once only

    users2 = UserStore(open_engine(f"sqlite:///{tmp_path}/b.db"), hasher=fast_hasher())
    assert ensure_first_admin(users2, environ={"SHARPEYES_ADMIN_PASSWORD": "from the environment"}) is None
    assert users2.verify_password("admin", "from the environment").role == "admin"  # type: ignore[union-attr]
