"""
Issue 5: second factors at login. TOTP codes computed here (RFC 6238,
independently of the C code), app passwords made with the CLI, and the
`mfa=required` policy, over USER/PASS, PLAIN and SCRAM.
"""

import time

import pytest

from conftest import wait_until
from test_cli import run
from test_sasl import SCRAM_PW, b64, scram_field, scram_login
from test_totp_cli import parse_enroll, totp_code

PW = "Correct-Horse-77"


@pytest.fixture
def mfa_site(site):
    site.add_user("alice", PW)
    site.add_user("bob", PW, extra="mfa=required")
    site.add_user("carol", SCRAM_PW, scheme="CRYPT", hashed="$6$x$" + "y" * 86,
                  extra="scram=" + scram_field(SCRAM_PW))
    for u in ("alice", "bob", "carol"):
        site.deliver(u, f"Subject: for {u}\n\nbody\n".encode())
    site.write_config(1)
    return site


def enroll(site, name):
    p = run(site, "totp", "enroll", name, "--no-qr")
    assert p.returncode == 0, p.stderr
    return parse_enroll(p.stdout)[0]


def app_password(site, name, label):
    p = run(site, "app-password", "add", name, label)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode().strip()


def auth_lines(srv, user):
    return [e for e in srv.audit_events()
            if e.get("event") in ("auth_ok", "auth_fail") and e.get("user") == user]


def login(srv, user, secret):
    c = srv.client()
    r = c.cmd(f"USER {user}")
    assert r.startswith("+OK")
    return c, c.cmd(f"PASS {secret}")


def app_login(srv, user, shown):
    """A login with an app password and a QUIT; returns its auth_ok audit line."""
    c, r = login(srv, user, shown)
    assert r.startswith("+OK Logged in"), r
    c.quit()
    return srv.wait_audit(lambda e: e.get("event") == "auth_ok" and e.get("user") == user)


def fresh_code(secret):
    """A code not too close to the end of its 30 s step, so that the
    step the test meant is the one the server sees."""
    while time.time() % 30 > 25:
        time.sleep(0.5)
    return totp_code(secret, time.time())


def test_totp_login(mfa_site, start_server):
    secret = enroll(mfa_site, "alice")
    srv = start_server()
    # The password alone no longer opens the account.
    c, r = login(srv, "alice", PW)
    assert r == "-ERR [AUTH] Authentication failed"
    # Password followed by the current code does.
    code = fresh_code(secret)
    c, r = login(srv, "alice", PW + code)
    assert r.startswith("+OK Logged in"), r
    c.quit()
    ev = srv.wait_audit(lambda e: e.get("event") == "auth_ok" and e.get("user") == "alice")
    assert ev["factor"] == "password+totp" and ev["mech"] == "USER"
    # The same code a second time: refused (replay).
    c, r = login(srv, "alice", PW + code)
    assert r == "-ERR [AUTH] Authentication failed"
    srv.wait_audit(lambda e: e.get("reason") == "TOTP code already used")
    # A wrong code, and a right code after a wrong password.
    c, r = login(srv, "alice", PW + ("000000" if code != "000000" else "111111"))
    assert r == "-ERR [AUTH] Authentication failed"
    c, r = login(srv, "alice", "Wrong-Password-1" + fresh_code(secret))
    assert r == "-ERR [AUTH] Authentication failed"
    reasons = [e.get("reason") for e in auth_lines(srv, "alice")]
    assert "TOTP code missing" in reasons and "bad TOTP code" in reasons
    assert "bad password" in reasons


def test_totp_previous_step_and_plain_mechanism(mfa_site, start_server):
    secret = enroll(mfa_site, "alice")
    srv = start_server()
    while time.time() % 30 > 20:
        time.sleep(0.5)
    # The previous step's code is still accepted (clock skew of one step).
    prev = totp_code(secret, time.time() - 30)
    c = srv.client()
    r = c.cmd("AUTH PLAIN " + b64(f"\0alice\0{PW}{prev}"))
    assert r.startswith("+OK Logged in"), r
    c.quit()
    # A code two steps old is not.
    old = totp_code(secret, time.time() - 60)
    if old not in (prev, totp_code(secret, time.time()), totp_code(secret, time.time() + 30)):
        c = srv.client()
        assert c.cmd("AUTH PLAIN " + b64(f"\0alice\0{PW}{old}")) == \
            "-ERR [AUTH] Authentication failed"


def test_totp_replay_survives_restart(mfa_site, start_server):
    secret = enroll(mfa_site, "alice")
    srv = start_server()
    code = fresh_code(secret)
    c, r = login(srv, "alice", PW + code)
    assert r.startswith("+OK"), r
    c.quit()
    assert srv.stop() == 0
    srv.stopped_by_test = True
    srv2 = start_server()
    c, r = login(srv2, "alice", PW + code)
    assert r == "-ERR [AUTH] Authentication failed"


def test_app_password(mfa_site, start_server):
    shown = app_password(mfa_site, "alice", "laptop")
    srv = start_server()
    assert app_login(srv, "alice", shown)["factor"] == "app-password:laptop"
    # Typed without dashes and in capitals it is the same password.
    c = srv.client()
    r = c.cmd("AUTH PLAIN " + b64("\0alice\0" + shown.replace("-", "").upper()))
    assert r.startswith("+OK Logged in"), r
    c.quit()
    ev = srv.wait_audit(lambda e: e.get("event") == "auth_ok" and e.get("mech") == "PLAIN")
    assert ev["factor"] == "app-password:laptop"
    # The last use is recorded by the server's next tick (every 5 s).
    def last_use():
        row = run(mfa_site, "app-password", "list", "alice").stdout.decode().split()
        assert row[0] == "laptop", row
        return row[2] != "never" and row[2]
    wait_until(last_use, 8, interval=0.25, what="the last use in app-passwords")
    # Another user cannot use it; once revoked it stops working.
    c, r = login(srv, "bob", shown)
    assert r == "-ERR [AUTH] Authentication failed"
    p = run(mfa_site, "app-password", "revoke", "alice", "laptop")
    assert p.returncode == 0, p.stderr
    c, r = login(srv, "alice", shown)
    assert r == "-ERR [AUTH] Authentication failed"
    # The account password still works (no mfa=required here).
    c, r = login(srv, "alice", PW)
    assert r.startswith("+OK"), r


def test_app_password_use_is_written_at_shutdown(mfa_site, start_server):
    shown = app_password(mfa_site, "alice", "tablet")
    srv = start_server()
    app_login(srv, "alice", shown)
    # Stopped before a tick could have passed with certainty: the queued
    # use is written on the way out.
    assert srv.stop() == 0
    srv.stopped_by_test = True
    row = run(mfa_site, "app-password", "list", "alice").stdout.decode().split()
    assert row[0] == "tablet" and row[2] != "never", row


def test_mfa_required(mfa_site, start_server):
    srv = start_server()
    # The password alone: refused, with the reason in the log only.
    c, r = login(srv, "bob", PW)
    assert r == "-ERR [AUTH] Authentication failed"
    srv.wait_audit(lambda e: e.get("user") == "bob" and e.get("reason") == "second factor required")
    # An app password is accepted.
    shown = app_password(mfa_site, "bob", "phone")
    c, r = login(srv, "bob", shown)
    assert r.startswith("+OK Logged in"), r
    c.quit()
    # Password + TOTP is accepted once enrolled.
    secret = enroll(mfa_site, "bob")
    c, r = login(srv, "bob", PW + fresh_code(secret))
    assert r.startswith("+OK Logged in"), r
    c.quit()
    factors = [e.get("factor") for e in auth_lines(srv, "bob") if e["event"] == "auth_ok"]
    assert factors == ["app-password:phone", "password+totp"]


def test_mfa_required_refuses_scram(mfa_site, start_server):
    line = mfa_site.users["carol"] + " mfa=required"
    mfa_site.users["carol"] = line
    mfa_site.write_users()
    srv = start_server()
    c = srv.client()
    assert scram_login(c, "carol", SCRAM_PW) == "-ERR [AUTH] Authentication failed"
    srv.wait_audit(lambda e: e.get("user") == "carol" and e.get("reason") == "second factor required")
