"""
Issue 5: OAUTHBEARER (RFC 7628) and XOAUTH2 with JWTs made by the openssl
command (tests/integration/jwtutil.py), checked by the server against a
local JWKS: valid RS256 and ES256 tokens, expired, wrong audience, wrong
issuer, bad signature, alg none, unknown account, and the RFC 7628 error
challenge.
"""

import json
import shutil

import pytest

from jwtutil import claims, make_ec_key, make_jwt, make_rsa_key, tamper, write_jwks
from test_sasl import b64, challenge

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")

ISS = "https://idp.example.org"
AUD = "postern-pop3"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwk")
    return {"rsa": make_rsa_key(d, kid="r1"), "ec": make_ec_key(d, kid="e1"),
            "other": make_rsa_key(d, kid="r1", name="other")}


@pytest.fixture
def srv(site, start_server, keys):
    site.add_user("alice@example.org", "Unused-Password-1")
    site.deliver("alice@example.org", b"Subject: a\n\nhello\n")
    write_jwks(site.root / "jwks.json", [keys["rsa"], keys["ec"]])
    return start_server(**{"oauth.jwks": "jwks.json", "oauth.issuer": ISS, "oauth.audience": AUD})


def token(keys, which="rsa", alg="RS256", **kw):
    c = dict(email="alice@example.org", iss=ISS, aud=AUD)
    c.update(kw)
    return make_jwt(keys[which], alg, claims(**c), kid=keys[which].kid)


def bearer(tok, user="alice@example.org"):
    a = f"a={user}," if user else ","
    return b64(f"n,{a}\x01host=localhost\x01port=110\x01auth=Bearer {tok}\x01\x01")


def xoauth2(tok, user="alice@example.org"):
    return b64(f"user={user}\x01auth=Bearer {tok}\x01\x01")


def refused(c, first_line):
    """The RFC 7628 failure: a JSON error challenge, then -ERR."""
    err = json.loads(challenge(first_line))
    assert err["status"] == "invalid_token"
    assert c.cmd("AQ==") == "-ERR [AUTH] Authentication failed"


def test_capa_offers_bearer_mechanisms(srv):
    c = srv.client()
    _, body = c.multi("CAPA")
    assert b"SASL PLAIN LOGIN SCRAM-SHA-256 OAUTHBEARER XOAUTH2\r\n" in body


@pytest.mark.parametrize("which,alg", [("rsa", "RS256"), ("ec", "ES256")])
def test_valid_token(srv, keys, which, alg):
    c = srv.client()
    r = c.cmd("AUTH OAUTHBEARER " + bearer(token(keys, which, alg)))
    assert r.startswith("+OK Logged in, 1 message"), r
    c.quit()
    ev = srv.wait_audit(lambda e: e.get("event") == "auth_ok" and e.get("mech") == "OAUTHBEARER")
    assert ev["user"] == "alice@example.org" and ev["factor"] == "token"


def test_token_names_the_user(srv, keys):
    """Without a=, the account comes from the token's claim."""
    c = srv.client()
    assert c.cmd("AUTH OAUTHBEARER " + bearer(token(keys), user=None)).startswith("+OK Logged in")
    c.quit()


def test_xoauth2(srv, keys):
    c = srv.client()
    assert c.cmd("AUTH XOAUTH2") == "+ "
    assert c.cmd(xoauth2(token(keys, "ec", "ES256"))).startswith("+OK Logged in")
    c.quit()
    c = srv.client()
    r = c.cmd("AUTH XOAUTH2 " + xoauth2(token(keys, exp_in=-600)))
    err = json.loads(challenge(r))
    assert err["status"] == "invalid_token"
    assert c.cmd("") == "-ERR [AUTH] Authentication failed"


@pytest.mark.parametrize("case,reason", [
    ("expired", "expired"),
    ("audience", "wrong audience"),
    ("issuer", "wrong issuer"),
    ("signature", "bad signature"),
    ("foreign key", "bad signature"),
    ("none", "malformed token"),  # alg none has an empty signature part
    ("other user", "token is for another user"),
    ("unknown account", "unknown user"),
])
def test_refused_tokens(srv, keys, case, reason):
    tok = {
        "expired": lambda: token(keys, exp_in=-600),
        "audience": lambda: token(keys, aud="another-service"),
        "issuer": lambda: token(keys, iss="https://evil.example"),
        "signature": lambda: tamper(token(keys)),
        "foreign key": lambda: token(keys, "other"),
        "none": lambda: make_jwt(keys["rsa"], "none", claims(email="alice@example.org", iss=ISS,
                                                             aud=AUD), kid="r1"),
        "other user": lambda: token(keys),
        "unknown account": lambda: token(keys, email="mallory@example.org"),
    }[case]()
    user = "bob@example.org" if case == "other user" else None
    c = srv.client()
    refused(c, c.cmd("AUTH OAUTHBEARER " + bearer(tok, user=user)))
    ev = srv.wait_audit(lambda e: e.get("event") == "auth_fail" and e.get("mech") == "OAUTHBEARER")
    assert ev["reason"] == reason
    # Still in AUTHORIZATION: a good token works on the same connection.
    assert c.cmd("AUTH OAUTHBEARER " + bearer(token(keys))).startswith("+OK Logged in")


def test_bearer_not_offered_without_jwks(site, start_server):
    site.add_user("alice", "x")
    srv = start_server()
    c = srv.client()
    assert c.cmd("AUTH OAUTHBEARER =") == "-ERR Unsupported authentication mechanism"


def test_config_needs_issuer_audience_and_loadable_keys(site, keys):
    from test_cli import run

    site.add_user("alice", "x")
    write_jwks(site.root / "jwks.json", [keys["rsa"]])
    site.write_config(1, {"oauth.jwks": "jwks.json", "oauth.issuer": ISS})
    p = run(site, "check")
    assert p.returncode != 0 and b"[oauth] jwks: needs [oauth] audience too" in p.stderr
    site.write_config(1, {"oauth.jwks": "jwks.json", "oauth.issuer": ISS, "oauth.audience": AUD})
    assert run(site, "check").returncode == 0
    (site.root / "jwks.json").write_text('{"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}')
    p = run(site, "check")
    assert p.returncode != 0 and b"[oauth] jwks" in p.stderr, p.stderr
    site.write_config(1, {"auth.mechanisms": "PLAIN XOAUTH2"})
    p = run(site, "check")
    assert p.returncode != 0 and b"OAUTHBEARER and XOAUTH2 need [oauth] jwks" in p.stderr
    site.write_config(1, {"auth.mechanisms": "PLAIN CRAM-MD5"})
    p = run(site, "check")
    assert p.returncode != 0 and b'unknown mechanism "CRAM-MD5"' in p.stderr


def test_sighup_reloads_the_keys(srv, site, keys, tmp_path):
    """The identity provider rotates its keys: after SIGHUP, tokens of the
    new key work and those of the removed one do not; a broken file keeps
    the keys loaded before."""
    import signal

    from conftest import wait_until

    new = make_rsa_key(tmp_path, kid="r2", name="rotated")
    write_jwks(site.root / "jwks.json", [new])
    srv.send_signal(signal.SIGHUP)
    wait_until(lambda: "1 bearer-token key loaded" in srv.stderr_text(), 10, what="reload")
    c = srv.client()
    tok = make_jwt(new, "RS256", claims(email="alice@example.org", iss=ISS, aud=AUD), kid="r2")
    assert c.cmd("AUTH OAUTHBEARER " + bearer(tok)).startswith("+OK Logged in")
    c.quit()
    c = srv.client()
    refused(c, c.cmd("AUTH OAUTHBEARER " + bearer(token(keys))))
    (site.root / "jwks.json").write_text("{not json")
    srv.send_signal(signal.SIGHUP)
    wait_until(lambda: "keeping the keys loaded before" in srv.stderr_text(), 10, what="refusal")
    c = srv.client()
    assert c.cmd("AUTH OAUTHBEARER " + bearer(tok)).startswith("+OK Logged in")
    c.quit()
