"""MD5 digest: RFC 2617's own example, server checks with and without qop, client answers."""

from __future__ import annotations

from ingest.gb28181.sip.digest import DigestChallenger, authorization_for, digest_response, parse_digest


def test_rfc2617_example() -> None:
    # RFC 2617 section 3.5.
    assert digest_response(username="Mufasa", realm="testrealm@host.com", password="Circle Of Life",
                           method="GET", uri="/dir/index.html", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                           qop="auth", nc="00000001", cnonce="0a4f113b") == "6629fae49393a05397450978507c4ef1"


def _answer(challenger: DigestChallenger, password: str, *, drop_qop: bool = False) -> str:
    challenge = challenger.challenge()
    if drop_qop:
        challenge = challenge.replace(', qop="auth"', "")
    return authorization_for(challenge, username="34020000001320000001", password=password,
                             method="REGISTER", uri="sip:34020000002000000001@3402000000")


def test_server_accepts_right_password_with_and_without_qop() -> None:
    ch = DigestChallenger("3402000000")
    for drop in (False, True):
        check = ch.check(_answer(ch, "12345678", drop_qop=drop), method="REGISTER", password="12345678")
        assert check.ok and check.username == "34020000001320000001"
    assert "qop=auth" in _answer(ch, "x") and "qop" not in _answer(ch, "x", drop_qop=True)


def test_server_refuses_wrong_password_forged_nonce_other_realm_and_garbage() -> None:
    ch = DigestChallenger("3402000000")
    wrong = ch.check(_answer(ch, "wrong"), method="REGISTER", password="12345678")
    assert not wrong.ok and "wrong password" in wrong.reason
    other = DigestChallenger("3402000000")  # another secret: its nonces are not ours
    forged = ch.check(_answer(other, "12345678"), method="REGISTER", password="12345678")
    assert not forged.ok and "not issued by us" in forged.reason
    realm = ch.check(_answer(DigestChallenger("9999999999"), "12345678"), method="REGISTER", password="12345678")
    assert not realm.ok and "realm" in realm.reason
    assert "no credentials" in ch.check(None, method="REGISTER", password="x").reason
    assert "not Digest" in ch.check("Basic abc", method="REGISTER", password="x").reason
    assert "lacks" in ch.check('Digest username="a"', method="REGISTER", password="x").reason
    unknown = ch.check(_answer(ch, "x"), method="REGISTER", password=None)
    assert not unknown.ok and "unknown device" in unknown.reason


def test_stale_nonce_is_flagged_only_with_the_right_password() -> None:
    now = [1000.0]
    ch = DigestChallenger("3402000000", nonce_ttl=60, clock=lambda: now[0])
    auth_ok, auth_bad = _answer(ch, "pw"), _answer(ch, "bad")
    now[0] += 61
    stale = ch.check(auth_ok, method="REGISTER", password="pw")
    assert not stale.ok and stale.stale
    assert not ch.check(auth_bad, method="REGISTER", password="pw").stale
    assert "stale=true" in ch.challenge(stale=True)


def test_parse_digest_handles_commas_in_quotes() -> None:
    fields = parse_digest('Digest realm="a,b", nonce="n", qop="auth,auth-int", algorithm=MD5')
    assert fields == {"realm": "a,b", "nonce": "n", "qop": "auth,auth-int", "algorithm": "MD5"}
    assert parse_digest("Basic x") == {}


def test_client_answers_a_challenge_without_qop() -> None:
    import hashlib

    auth = authorization_for('Digest realm="3402000000", nonce="n1", algorithm=MD5', username="u", password="p",
                             method="REGISTER", uri="sip:x@y")
    f = parse_digest(auth)
    h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    assert "qop" not in f and "nc" not in f
    assert f["response"] == h(f"{h('u:3402000000:p')}:n1:{h('REGISTER:sip:x@y')}")


def test_a_nonce_answered_from_another_host_is_refused() -> None:
    ch = DigestChallenger("3402000000")
    auth = authorization_for(ch.challenge(bound="198.51.100.7"), username="u", password="pw", method="REGISTER",
                             uri="sip:x@y")
    assert ch.check(auth, method="REGISTER", password="pw", bound="198.51.100.7").ok
    replay = ch.check(auth, method="REGISTER", password="pw", bound="203.0.113.9")
    assert not replay.ok and "not issued by us" in replay.reason
