"""
POP3 conformance on a raw socket (RFC 1939, RFC 2449): greeting, CAPA,
case, states and arguments, pipelining, APOP, authentication failures and
their delay, disabled accounts, and messages that vanish under a session.
"""

import hashlib
import os
import poplib
import re
import subprocess
import threading
import time
import warnings

import pytest

from conftest import CRLF, to_wire

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt  # deprecated in 3.11, still present
    except ImportError:  # pragma: no cover - Python 3.13+
        crypt = None


def sha512_crypt(password):
    if crypt is not None:
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
    out = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password.encode(),
                         capture_output=True, check=True, timeout=10)
    return out.stdout.decode().strip()


def yescrypt(password):
    if crypt is None:
        pytest.skip("no crypt module for yescrypt")
    salt = "$y$j9T$" + crypt.mksalt(crypt.METHOD_SHA512)[3:19] + "$"
    h = crypt.crypt(password, salt)
    if h is None or not h.startswith("$y$"):
        pytest.skip("libcrypt without yescrypt")
    return h


MSG1 = b"Subject: one\nFrom: a@example.org\n\n.hidden dot\nbody one\n"
MSG2 = b"Subject: two\r\n\r\nbody two\r\n"


@pytest.fixture
def mailbox(site, start_server):
    site.add_user("alice", "secret")
    site.add_user("bob", "hunter2")
    site.deliver("alice", MSG1)
    site.deliver("alice", MSG2)
    return start_server()


def test_greeting(server):
    c = server.client()
    assert c.greeting == "+OK Postern ready"
    assert "<" not in c.greeting  # no APOP timestamp when apop = no


CAPS = {"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"}


def capa(c):
    _, body = c.multi("CAPA")
    return [line.decode() for line in body.split(CRLF)[:-1]]


def test_capa(mailbox):
    c = mailbox.client()
    before = capa(c)
    assert CAPS | {"USER"} <= set(before)
    assert any(re.match(r"^IMPLEMENTATION \S", line) for line in before)
    assert "SASL PLAIN LOGIN SCRAM-SHA-256" in before  # no [oauth]: no bearer mechanisms
    assert "STLS" not in before
    c.login("alice", "secret")
    # RFC 2449 section 5: what AUTHORIZATION announces, TRANSACTION
    # announces too (USER and SASL: "both / no" differences).
    assert capa(c) == before
    assert c.err("USER bob").startswith("-ERR")
    c.quit()


def test_commands_are_case_insensitive(mailbox):
    c = mailbox.client()
    assert capa(c)
    c.ok("user alice")
    c.ok("pAsS secret")
    assert c.ok("stat") == f"+OK 2 {len(to_wire(MSG1)) + len(to_wire(MSG2))}"
    c.ok("list 1")
    c.ok("Uidl 2")
    assert c.multi("retr 1")[1] == to_wire(MSG1)
    assert c.multi("ToP 2 0")[1] == b"Subject: two\r\n\r\n"
    c.multi("lIsT")
    c.multi("uidl")
    c.ok("dele 2")
    c.ok("rset")
    c.ok("noop")
    assert c.cmd("quit").startswith("+OK")
    c.wait_closed()


def test_lf_line_ends_and_byte_by_byte_input(mailbox):
    c = mailbox.client()
    c.send(b"USER alice\nPASS secret\n")
    assert c.readline().startswith(b"+OK")
    assert c.readline().startswith(b"+OK")
    for b in b"STAT\r\n":
        c.send(bytes([b]))
        time.sleep(0.002)
    assert c.readline().startswith(b"+OK 2 ")
    c.quit()


def test_password_with_spaces(site, start_server):
    site.add_user("carol", "correct horse  battery staple ")
    srv = start_server()
    c = srv.client()
    c.ok("USER carol")
    c.ok("PASS correct horse  battery staple ")
    c.quit()
    c = srv.client()
    c.ok("USER carol")
    c.err("PASS correct horse battery staple")


@pytest.mark.parametrize("scheme", ["SHA512-CRYPT", "CRYPT"])
def test_crypt_passwords(site, start_server, scheme):
    hashed = sha512_crypt("pw-crypt") if scheme == "SHA512-CRYPT" else yescrypt("pw-crypt")
    site.add_user("dave", "pw-crypt", scheme=scheme, hashed=hashed)
    srv = start_server()
    c = srv.client()
    c.ok("USER dave")
    assert c.cmd("PASS pw-crypT").startswith("-ERR [AUTH]")
    c.login("dave", "pw-crypt")
    c.quit()


AUTH_STATE_ERRORS = [
    "STAT", "LIST", "LIST 1", "UIDL", "UIDL 1", "RETR 1", "TOP 1 0", "DELE 1", "NOOP",
    "RSET", "PASS secret", "USER", "USER a b", "APOP alice 0123456789abcdef0123456789abcdef",
    "FOO", "", "   ", " USER alice", "STLS", "AUTH CRAM-MD5", "AUTH PLAIN a b", "QUIT now", "CAPA x",
]


def test_wrong_state_and_bad_arguments_before_login(mailbox):
    c = mailbox.client()
    for line in AUTH_STATE_ERRORS:
        c.err(line)
    # After all that, the session works normally.
    c.login("alice", "secret")
    assert c.stat()[0] == 2
    c.quit()


TRANSACTION_ERRORS = [
    "USER alice", "PASS secret", "APOP alice 0123456789abcdef0123456789abcdef",
    "RETR", "RETR 0", "RETR 3", "RETR 99", "RETR -1", "RETR +1", "RETR abc", "RETR 1x",
    "RETR 1 2", "RETR 4294967297", "RETR 18446744073709551617", "RETR 0x1",
    "LIST 0", "LIST 3", "LIST 4294967297", "LIST 1 2", "UIDL 0", "UIDL 4294967297",
    "UIDL x", "TOP", "TOP 1", "TOP 1 -1", "TOP 1 x", "TOP 0 1", "TOP 3 0",
    "TOP 4294967297 0", "TOP 1 0 0", "TOP 1 +5", "DELE", "DELE 0",
    "DELE 3", "DELE 4294967297", "DELE 1 2", "STAT 1", "NOOP 1", "RSET 1", "QUIT 1",
    "CAPA x", "XYZZY", "", "STLS",
]


def test_wrong_state_bad_arguments_and_out_of_range_after_login(mailbox):
    c = mailbox.client()
    c.login("alice", "secret")
    for line in TRANSACTION_ERRORS:
        c.err(line)
    # Nothing above marked or changed anything.
    assert c.stat()[0] == 2
    # RFC 1939: a line count past the body, however long, means all of it.
    assert c.multi("TOP 2 99999999999999999999")[1] == to_wire(MSG2)
    c.ok("DELE 1")
    for line in ("RETR 1", "TOP 1 0", "LIST 1", "UIDL 1", "DELE 1"):
        c.err(line)
    assert 1 not in c.listing("LIST") and 1 not in c.listing("UIDL")
    c.ok("RETR 2")
    assert c.read_multiline() == to_wire(MSG2)
    c.ok("RSET")
    assert c.stat()[0] == 2
    c.quit()
    assert len(mailbox.site.message_files("alice")) == 2


def test_pipelining(mailbox):
    c = mailbox.client()
    c.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 1 0\r\n"
           b"NOOP\r\nBOGUS\r\nRETR 2\r\nLIST 2\r\nQUIT\r\n")
    assert c.readline().startswith(b"+OK")  # USER
    assert c.readline().startswith(b"+OK")  # PASS
    assert c.readline().startswith(b"+OK 2 ")  # STAT
    assert c.readline().startswith(b"+OK")
    assert c.read_multiline().count(CRLF) == 2  # LIST
    assert c.readline().startswith(b"+OK")
    assert c.read_multiline().count(CRLF) == 2  # UIDL
    assert c.readline().startswith(b"+OK")
    assert c.read_multiline() == to_wire(MSG1)
    assert c.readline().startswith(b"+OK")
    assert c.read_multiline() == b"Subject: one\r\nFrom: a@example.org\r\n\r\n"
    assert c.readline().startswith(b"+OK")  # NOOP
    assert c.readline().startswith(b"-ERR")  # BOGUS
    assert c.readline().startswith(b"+OK")
    assert c.read_multiline() == to_wire(MSG2)
    assert c.readline() == b"+OK 2 %d" % len(to_wire(MSG2))
    assert c.readline().startswith(b"+OK")  # QUIT
    assert c.wait_closed() == b""


def test_pipelining_large_answers(site, start_server):
    site.add_user("alice", "secret")
    big = b"".join(b".%06d pipelined line\n" % i for i in range(20000))
    site.deliver("alice", big)
    srv = start_server()
    c = srv.client()
    c.send(b"USER alice\r\nPASS secret\r\n" + b"RETR 1\r\nLIST\r\n" * 6 + b"QUIT\r\n")
    c.readline()
    c.readline()
    for _ in range(6):
        assert c.readline() == b"+OK %d octets" % len(to_wire(big))
        assert c.read_multiline() == to_wire(big)
        c.readline()
        assert c.read_multiline() == b"1 %d\r\n" % len(to_wire(big))
    assert c.readline().startswith(b"+OK")
    c.wait_closed()


def apop_digest(greeting, password):
    ts = re.search(r"(<[^<>]*>)", greeting).group(1)
    return hashlib.md5((ts + password).encode()).hexdigest()


def test_apop(site, start_server):
    site.add_user("alice", "secret")
    site.add_user("carol", "pw3", scheme="SHA512-CRYPT", hashed=sha512_crypt("pw3"))
    site.deliver("alice", MSG1)
    srv = start_server(apop="yes")
    c = srv.client()
    m = re.match(r"^\+OK .*(<[^<>@\s]+@[^<>\s]+>)$", c.greeting)
    assert m, c.greeting
    c2 = srv.client()
    assert c2.greeting != c.greeting, "APOP timestamps must differ per connection"
    # A digest made for another connection's timestamp fails.
    r = c2.cmd(f"APOP alice {apop_digest(c.greeting, 'secret')}")
    assert r.startswith("-ERR [AUTH]"), r
    c2.close()
    c.ok(f"APOP alice {apop_digest(c.greeting, 'secret')}")
    assert c.retr(1) == to_wire(MSG1)
    c.quit()
    # poplib speaks APOP too.
    p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
    p.apop("alice", "secret")
    assert p.stat()[0] == 1
    p.quit()
    # A CRYPT account cannot use APOP, even with the right password.
    c = srv.client()
    assert c.cmd(f"APOP carol {apop_digest(c.greeting, 'pw3')}").startswith("-ERR [AUTH]")
    c.login("carol", "pw3")  # USER/PASS still works
    c.quit()
    c = srv.client()
    c.err("APOP alice " + "0" * 32)
    c.err("APOP alice 0123")
    c.err("APOP alice " + "g" * 32)
    c.err("APOP alice")


def test_apop_timestamps_are_not_predictable(site, start_server):
    # A timestamp that steps evenly from one connection to the next could
    # be answered ahead of time by a client lured to a fake server, and
    # the digest replayed here later. One field must be 64 random bits.
    site.add_user("alice", "secret")
    srv = start_server(apop="yes")
    stamps = []
    for _ in range(3):
        c = srv.client()
        m = re.search(r"<([^<>@\s]+)@", c.greeting)
        assert m, c.greeting
        stamps.append(m.group(1).split("."))
        c.quit()
    random_fields = []
    for i in range(len(stamps[0])):
        if not all(i < len(s) and re.fullmatch(r"[0-9a-f]{16}", s[i]) for s in stamps):
            continue
        a, b, d = (int(s[i], 16) for s in stamps)
        if (b - a) % 2**64 != (d - b) % 2**64:
            random_fields.append(i)
    assert random_fields, stamps


def test_apop_refused_when_disabled(mailbox):
    c = mailbox.client()
    c.err(f"APOP alice {hashlib.md5(b'<x@y>secret').hexdigest()}")
    c.login("alice", "secret")
    c.quit()


def timed_login(port, user, password):
    from conftest import Client

    c = Client(port)
    c.ok(f"USER {user}")
    t0 = time.monotonic()
    r = c.cmd(f"PASS {password}")
    elapsed = time.monotonic() - t0
    c.close()
    return r, elapsed


def test_failures_look_alike_and_are_delayed(site, start_server):
    site.add_user("alice", "secret")
    site.add_user("erin", "pw5", extra="pop3=no")
    srv = start_server(failure_delay=1)
    results = {}

    def run(key, user, password):
        results[key] = timed_login(srv.port, user, password)

    cases = {"wrong": ("alice", "wrong"), "unknown": ("nosuchuser", "x"),
             "disabled_wrong": ("erin", "nope"), "ok": ("alice", "secret")}
    threads = [threading.Thread(target=run, args=(k, *v)) for k, v in cases.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    texts = {k: r for k, (r, _) in results.items()}
    assert texts["wrong"].startswith("-ERR")
    assert texts["wrong"] == texts["unknown"] == texts["disabled_wrong"]
    for k in ("wrong", "unknown", "disabled_wrong"):
        assert results[k][1] >= 0.9, (k, results[k])
    assert texts["ok"].startswith("+OK") and results["ok"][1] < 0.9
    # USER says the same for every name.
    c = srv.client()
    assert c.ok("USER alice") == c.ok("USER nosuchuser")


def test_disabled_account(site, start_server):
    site.add_user("erin", "pw5", extra="pop3=no")
    site.add_user("frank", "pw6", extra="nologin")
    srv = start_server()
    for user, pw in (("erin", "pw5"), ("frank", "pw6")):
        c = srv.client()
        c.ok(f"USER {user}")
        r = c.cmd(f"PASS {pw}")
        assert r.startswith("-ERR [AUTH]"), r
        c.err("STAT")  # still not logged in
        c.close()


def test_vanished_message(site, start_server):
    site.add_user("alice", "secret")
    p1 = site.deliver("alice", MSG1)
    site.deliver("alice", MSG2)
    srv = start_server()
    c = srv.client()
    c.login("alice", "secret")
    os.unlink(p1)
    assert c.cmd("RETR 1").startswith("-ERR [SYS/TEMP]")
    assert c.cmd("TOP 1 0").startswith("-ERR [SYS/TEMP]")
    assert c.retr(2) == to_wire(MSG2)
    assert 1 in c.listing("LIST")  # the snapshot still lists it
    c.ok("DELE 1")
    assert c.quit().startswith("+OK")
    assert list(site.message_files("alice").values())[0].read_bytes() == MSG2
    c = srv.client()
    c.login("alice", "secret")
    assert c.stat() == (1, len(to_wire(MSG2)))
    c.quit()


def test_noop_rset_and_quit_answers(mailbox):
    c = mailbox.client()
    c.login("alice", "secret")
    c.ok("NOOP")
    c.ok("DELE 1")
    r = c.ok("RSET")
    assert r.startswith("+OK")
    r = c.cmd("QUIT")
    assert r.startswith("+OK")
    assert c.wait_closed() == b""


def test_large_mailbox_listings(site, start_server):
    """3000 messages: LIST and UIDL stream with backpressure and stay in
    order when pipelined behind each other and read late."""
    site.add_user("alice", "secret")
    md = site.maildir("alice")
    for i in range(3000):
        (md / "cur" / f"{1700000000 + i}.M{i}P1.host:2,S").write_bytes(b"Subject: %d\n\nx\n" % i)
    srv = start_server()
    c = srv.client(rcvbuf=4096)
    c.login("alice", "secret")
    c.send(b"LIST\r\nUIDL\r\nSTAT\r\n")
    time.sleep(0.3)
    assert c.readline().startswith(b"+OK")
    sizes = c.read_multiline().split(CRLF)[:-1]
    assert c.readline().startswith(b"+OK")
    uids = c.read_multiline().split(CRLF)[:-1]
    assert len(sizes) == len(uids) == 3000
    assert [int(x.split()[0]) for x in sizes] == list(range(1, 3001))
    assert [x.split()[1] for x in uids] == [b"%d.M%dP1.host" % (1700000000 + i, i)
                                            for i in range(3000)]
    assert c.readline() == b"+OK 3000 %d" % sum(int(x.split()[1]) for x in sizes)
    c.quit()
