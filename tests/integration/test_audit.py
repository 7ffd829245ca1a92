"""
The audit log (DESIGN.md section 4, invariant 9): one logfmt line per event
with stable keys; never a password or a raw line from before login; user
input cannot forge a line or a key.
"""

import hashlib
import re

import pytest

from conftest import to_wire

PASSWORD = "Pa55-w0rd-in-the-clear-7319"
WRONG = "wr0ng-guess-5527"
PREAUTH_JUNK = "XYZZY-preauth-junk-4411"


@pytest.fixture
def audited(site, start_server):
    site.add_user("alice", PASSWORD)
    site.add_user("bob", "hunter2")
    site.deliver("alice", b"Subject: 1\n\none\n")
    site.deliver("alice", b"Subject: 2\n\ntwo\n")
    return start_server(apop="yes")


def events_for(srv, sid):
    return [e for e in srv.audit_events() if e.get("sid") == sid]


def test_session_events(audited):
    srv = audited
    c = srv.client()
    c.ok("USER alice")
    c.err(f"PASS {WRONG}")
    c.login("alice", PASSWORD)
    c.retr(1)
    c.ok("DELE 2")
    c.quit()
    srv.wait_audit(lambda e: e["event"] == "disconnect")
    evs = srv.audit_events()
    sids = {e["sid"] for e in evs}
    assert len(sids) == 1
    sid = sids.pop()
    assert re.match(r"^[0-9a-f]{4,}$", sid)
    names = [e["event"] for e in evs]
    assert names == ["connect", "auth_fail", "auth_ok", "retr", "dele", "quit", "disconnect"]
    for e in evs:
        assert e["ip"] == "127.0.0.1"
        assert e["port"].isdigit()
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", e["ts"]), e["ts"]
        assert e["level"] in ("info", "warning", "notice")
    by = {e["event"]: e for e in evs}
    for name in ("auth_fail", "auth_ok", "retr", "dele", "quit", "disconnect"):
        assert by[name]["user"] == "alice", name
    assert by["auth_fail"]["reason"]
    assert by["auth_ok"]["mech"] == "USER"
    assert by["retr"]["msg"] == "1" and by["retr"]["size"] == str(len(to_wire(b"Subject: 1\n\none\n")))
    assert by["dele"]["msg"] == "2" and by["dele"]["uidl"]
    assert by["quit"]["deleted"] == "1"


def test_sids_differ_and_disconnect_without_login(audited):
    srv = audited
    a = srv.client()
    b = srv.client()
    a.quit()
    b.close()
    wait = lambda: len([e for e in srv.audit_events() if e["event"] == "disconnect"]) == 2  # noqa: E731
    srv.wait_audit(lambda e: wait())
    evs = srv.audit_events()
    assert len({e["sid"] for e in evs}) == 2
    for e in evs:
        if e["event"] == "disconnect":
            assert "user" not in e or e["user"] == ""


def test_no_password_and_no_preauth_line_in_any_log(audited):
    srv = audited
    c = srv.client()
    greeting = c.greeting
    c.err(PREAUTH_JUNK)
    c.ok("USER alice")
    c.err(f"PASS {WRONG}")
    c.ok(f"USER {PASSWORD}")  # a password typed into USER by mistake is still a "user"
    c.err(f"PASS {PASSWORD}")
    c.ok("USER nosuchuser")
    c.err(f"PASS {PASSWORD}")
    digest = hashlib.md5((re.search(r"<[^>]*>", greeting).group(0) + PASSWORD).encode()).hexdigest()
    c.ok(f"APOP alice {digest}")
    c.quit()
    c = srv.client()
    c.login("alice", PASSWORD)
    c.quit()
    srv.wait_audit(lambda e: e["event"] == "quit" and e.get("mech") is None)
    srv.wait_audit(lambda e: len([x for x in srv.audit_events() if x["event"] == "disconnect"]) == 2)
    logs = srv.audit_text() + srv.stderr_text()
    for secret in (WRONG, PREAUTH_JUNK, digest, "PASS "):
        assert secret not in logs, f"{secret!r} leaked into a log"
    # The password only appears where the client sent it as a user name.
    leaked = [line for line in logs.splitlines()
              if PASSWORD in line and f'user="{PASSWORD}"' not in line]
    assert not leaked, leaked
    apop = [e for e in srv.audit_events() if e.get("mech") == "APOP"]
    assert apop and apop[0]["event"] == "auth_ok"


# USER takes one space-free argument (a name with spaces is refused), so
# forgeries use every other separator a log reader might honour.
FORGERIES = [
    'x"\tevent=auth_ok\tuser="root',
    'x\\"\tlevel=alert\tevent=ban',
    'a\rts=2030-01-01T00:00:00Z\tlevel=info\tevent=auth_ok\tuser="root"',
    "a\x0bevent=auth_ok\x0cuser=root",
    'q"uote',
    "caf\xe9",
    "back\\slash",
    "eq=uals",
    "\x1b[31mred",
    "del\x7f",
]


def test_user_with_spaces_is_refused(audited):
    c = audited.client()
    c.err('USER x" event=auth_ok user="root')
    c.quit()


@pytest.mark.parametrize("user", FORGERIES)
def test_user_input_cannot_forge_lines_or_keys(audited, user):
    srv = audited
    c = srv.client()
    raw = user.encode("latin-1")
    assert c.cmd(b"USER " + raw).startswith("+OK")
    assert c.cmd(f"PASS {WRONG}").startswith("-ERR")
    c.quit()
    srv.wait_audit(lambda e: e["event"] == "disconnect")
    # Every line parses strictly (no control bytes, unique keys, whole line).
    evs = srv.audit_events()
    assert [e["event"] for e in evs] == ["connect", "auth_fail", "disconnect"]
    fail = evs[1]
    assert fail["user"] == user
    assert set(fail) >= {"ts", "level", "event", "sid", "ip", "port", "user", "reason"}
    assert fail["event"] == "auth_fail" and fail["level"] == "info"
    assert len(srv.audit_text().split("\n")) == 4


def test_audit_file_reopened_on_sighup(audited, site):
    import os
    import signal

    srv = audited
    c = srv.client()
    c.close()
    srv.wait_audit(lambda e: e["event"] == "disconnect")
    rotated = site.root / "audit.log.1"
    os.rename(srv.audit_path, rotated)
    srv.send_signal(signal.SIGHUP)
    # The reopen happens on the main loop; poll until a new connection is
    # logged in the new file.

    def new_file_used():
        c = srv.client()
        c.close()
        return srv.audit_path.exists() and "event=connect" in srv.audit_text()

    from conftest import wait_until

    wait_until(new_file_used, 10, interval=0.1, what="audit log reopened")
    assert "event=connect" in rotated.read_text()
