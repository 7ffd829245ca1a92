"""
Issue 5: AUTH (RFC 5034) with PLAIN, LOGIN, SCRAM-SHA-256 and
SCRAM-SHA-256-PLUS against the real server.

The SCRAM client is written here with hashlib/hmac (RFC 5802/7677); the
-PLUS variant runs over `openssl s_client`, whose -keymatexport prints the
tls-exporter value (RFC 9266) of its own connection. curl drives PLAIN and
LOGIN as a real client does.
"""

import base64
import hashlib
import hmac
import os
import re
import subprocess
import time

import pytest

from conftest import CRLF, OPENSSL, Client, curl, needs_curl, needs_openssl, to_wire
from test_tls import certs, install_cert, listen_both, tls_server, users  # noqa: F401  (fixtures)
from test_tls import pop3s


SCRAM_PW = "pencil-Sharp-2026"


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(s):
    return base64.b64decode(s, validate=True)


def scram_keys(password, salt, iters):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iters)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    return stored, server


def scram_field(password, salt=b"0123456789abcdef", iters=4096):
    """{SCRAM-SHA-256}ITER,SALT,STORED,SERVER as Dovecot stores it."""
    stored, server = scram_keys(password, salt, iters)
    return f"{{SCRAM-SHA-256}}{iters},{b64(salt)},{b64(stored)},{b64(server)}"


class Scram:
    """The client side of SCRAM-SHA-256 (RFC 5802 section 3)."""

    def __init__(self, user, password, gs2="n,,", cbind_data=b"", nonce=None):
        self.user, self.password = user, password
        self.gs2, self.cbind_data = gs2, cbind_data
        self.cnonce = nonce or b64(os.urandom(18))
        self.bare = f"n={user},r={self.cnonce}"

    def first(self):
        return self.gs2 + self.bare

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(self.cnonce) and len(attrs["r"]) > len(self.cnonce)
        salt, iters = unb64(attrs["s"]), int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iters)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        cbind = b64(self.gs2.encode() + self.cbind_data)
        without_proof = f"c={cbind},r={attrs['r']}"
        auth_message = f"{self.bare},{server_first},{without_proof}".encode()
        sig = hmac.new(stored, auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self.expect_v = b64(hmac.new(server_key, auth_message, "sha256").digest())
        return f"{without_proof},p={b64(proof)}"


def challenge(line):
    assert line.startswith("+ "), line
    return unb64(line[2:]).decode()


def scram_login(c, user, password, mech="SCRAM-SHA-256", **kw):
    """Runs the exchange on client c; returns the final status line."""
    s = Scram(user, password, **kw)
    first = challenge(c.cmd(f"AUTH {mech} {b64(s.first())}"))
    r = c.cmd(b64(s.final(first)))
    if not r.startswith("+ "):
        return r
    assert challenge(r) == "v=" + s.expect_v, "server signature does not verify"
    return c.cmd("")


@pytest.fixture
def sasl_site(site):
    site.add_user("alice", "secret-Plain-1")
    site.add_user("carol", SCRAM_PW, scheme="CRYPT",
                  hashed="$6$saltsalt$" + "x" * 86,  # not the password: SCRAM keys decide
                  extra="scram=" + scram_field(SCRAM_PW))
    site.deliver("alice", b"Subject: a\n\nhello\n")
    site.deliver("carol", b"Subject: c\n\nfor carol\n")
    return site


@pytest.fixture
def srv(sasl_site, start_server):
    return start_server()


def test_capa_and_auth_list(srv):
    c = srv.client()
    _, body = c.multi("CAPA")
    assert b"\r\nSASL PLAIN LOGIN SCRAM-SHA-256\r\n" in CRLF + body
    _, body = c.multi("AUTH")
    assert body == b"PLAIN\r\nLOGIN\r\nSCRAM-SHA-256\r\n"


def test_plain_with_and_without_initial_response(srv):
    c = srv.client()
    r = c.cmd("AUTH PLAIN " + b64("\0alice\0secret-Plain-1"))
    assert r.startswith("+OK Logged in, 1 message"), r
    assert c.stat()[0] == 1
    c.quit()
    c = srv.client()
    assert c.cmd("AUTH PLAIN") == "+ "
    assert c.cmd(b64("alice\0alice\0secret-Plain-1")).startswith("+OK Logged in")
    c.quit()
    ev = srv.wait_audit(lambda e: e.get("event") == "auth_ok" and e.get("mech") == "PLAIN")
    assert ev["user"] == "alice" and ev["factor"] == "password"


def test_plain_refusals(srv):
    c = srv.client()
    assert c.cmd("AUTH PLAIN " + b64("bob\0alice\0secret-Plain-1")) == \
        "-ERR [AUTH] Authorization identity must be empty or the user name"
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0wrong")) == "-ERR [AUTH] Authentication failed"
    assert c.cmd("AUTH PLAIN not*base64") == "-ERR Invalid base64 in authentication response"
    assert c.cmd("AUTH PLAIN =").startswith("-ERR Invalid PLAIN response")
    assert c.cmd("AUTH PLAIN") == "+ "
    assert c.cmd("*") == "-ERR Authentication cancelled"
    assert c.cmd("AUTH CRAM-MD5") == "-ERR Unsupported authentication mechanism"
    assert c.cmd("AUTH PLAIN") == "+ "
    assert c.cmd("A" * 4000) == "-ERR Authentication response too long"
    # The session is still usable after all of that.
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0secret-Plain-1")).startswith("+OK")
    c.quit()


def test_login_mechanism(srv):
    c = srv.client()
    assert challenge(c.cmd("AUTH LOGIN")) == "Username:"
    assert challenge(c.cmd(b64("alice"))) == "Password:"
    assert c.cmd(b64("secret-Plain-1")).startswith("+OK Logged in")
    c.quit()
    # With the user name as initial response.
    c = srv.client()
    assert challenge(c.cmd("AUTH LOGIN " + b64("alice"))) == "Password:"
    assert c.cmd(b64("nope")) == "-ERR [AUTH] Authentication failed"
    srv.wait_audit(lambda e: e.get("event") == "auth_fail" and e.get("mech") == "LOGIN")


@needs_curl
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_curl_sasl(srv, mech):
    p = curl("--login-options", f"AUTH={mech}", "-u", "alice:secret-Plain-1",
             f"pop3://127.0.0.1:{srv.port}/1")
    assert p.stdout == to_wire(b"Subject: a\n\nhello\n")
    srv.wait_audit(lambda e: e.get("event") == "auth_ok" and e.get("mech") == mech)


def test_scram(srv):
    c = srv.client()
    assert scram_login(c, "carol", SCRAM_PW).startswith("+OK Logged in, 1 message")
    assert c.retr(1) == to_wire(b"Subject: c\n\nfor carol\n")
    c.quit()
    ev = srv.wait_audit(lambda e: e.get("event") == "auth_ok" and e.get("mech") == "SCRAM-SHA-256")
    assert ev["user"] == "carol"


def test_scram_wrong_password_and_unknown_user(srv):
    c = srv.client()
    assert scram_login(c, "carol", "wrong-password") == "-ERR [AUTH] Authentication failed"
    # An unknown user gets a salt all the same, stable for the name.
    s1 = Scram("nobody", "x")
    first1 = challenge(c.cmd("AUTH SCRAM-SHA-256 " + b64(s1.first())))
    assert c.cmd(b64(s1.final(first1))) == "-ERR [AUTH] Authentication failed"
    s2 = Scram("nobody", "x")
    first2 = challenge(c.cmd("AUTH SCRAM-SHA-256 " + b64(s2.first())))
    salt = lambda f: dict(kv.split("=", 1) for kv in f.split(","))["s"]  # noqa: E731
    assert salt(first1) == salt(first2)
    assert c.cmd("*") == "-ERR Authentication cancelled"
    # An account without SCRAM keys fails the same way.
    assert scram_login(c, "alice", "secret-Plain-1") == "-ERR [AUTH] Authentication failed"


def test_scram_stored_as_password(sasl_site, start_server):
    """An account whose password field itself is {SCRAM-SHA-256} (as Dovecot
    writes it) works with SCRAM and with USER/PASS."""
    stored = scram_field("Dove-Format-Pw1", salt=b"saltsaltsaltsalt")
    sasl_site.add_user("dave", "Dove-Format-Pw1", scheme="SCRAM-SHA-256",
                       hashed=stored[len("{SCRAM-SHA-256}"):])
    srv = start_server()
    c = srv.client()
    assert scram_login(c, "dave", "Dove-Format-Pw1").startswith("+OK Logged in")
    c.quit()
    c = srv.client()
    c.login("dave", "Dove-Format-Pw1")
    c.quit()


def test_scram_rfc7677_account(sasl_site, start_server):
    """The RFC 7677 section 3 account (user/pencil, its salt and count)."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    sasl_site.add_user("user", "pencil", scheme="CRYPT", hashed="$6$x$" + "y" * 86,
                       extra="scram=" + scram_field("pencil", salt=salt, iters=4096))
    srv = start_server()
    c = srv.client()
    s = Scram("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    first = challenge(c.cmd("AUTH SCRAM-SHA-256 " + b64(s.first())))
    assert first.startswith("r=rOprNGfwEbeRWgbNEkqO")
    assert first.endswith(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    r = c.cmd(b64(s.final(first)))
    assert challenge(r) == "v=" + s.expect_v
    assert c.cmd("").startswith("+OK Logged in")
    c.quit()


# ---------------------------------------------------------------------------
# SCRAM-SHA-256-PLUS over TLS 1.3 with tls-exporter
# ---------------------------------------------------------------------------

class SClient:
    """openssl s_client as a POP3S client that also knows the connection's
    tls-exporter value."""

    def __init__(self, port, tls13=True):
        args = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-nocommands",
                "-keymatexport", "EXPORTER-Channel-Binding", "-keymatexportlen", "32"]
        args.append("-tls1_3" if tls13 else "-tls1_2")
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.exporter = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = self.p.stdout.readline().decode("latin-1")
            assert line, "s_client ended before the greeting"
            m = re.match(r"\s*Keying material: ([0-9A-F]+)", line)
            if m:
                self.exporter = bytes.fromhex(m.group(1))
            if line.startswith("+OK"):
                self.greeting = line
                return
        pytest.fail("no greeting through s_client")

    def cmd(self, line):
        self.p.stdin.write(line.encode() + b"\r\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().decode("latin-1").rstrip("\r\n")

    def close(self):
        self.p.stdin.close()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


@needs_openssl
def test_scram_plus_over_tls13(sasl_site, tls_server):
    srv = tls_server()
    c = SClient(srv.tls_port)
    try:
        assert c.exporter is not None and len(c.exporter) == 32
        c.cmd("CAPA")
        capa = []
        while (line := c.p.stdout.readline().decode().rstrip("\r\n")) != ".":
            capa.append(line)
        assert "SASL PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS" in capa
        r = scram_login(c, "carol", SCRAM_PW, mech="SCRAM-SHA-256-PLUS",
                        gs2="p=tls-exporter,,", cbind_data=c.exporter)
        assert r.startswith("+OK Logged in"), r
        c.cmd("QUIT")
    finally:
        c.close()
    # Another connection's exporter value (a relay's) is refused.
    c = SClient(srv.tls_port)
    try:
        other = bytes(32)
        r = scram_login(c, "carol", SCRAM_PW, mech="SCRAM-SHA-256-PLUS",
                        gs2="p=tls-exporter,,", cbind_data=other)
        assert r == "-ERR [AUTH] SCRAM channel binding does not match"
        # "y" (client could bind) while -PLUS is offered: a downgrade.
        r = c.cmd("AUTH SCRAM-SHA-256 " + b64("y,,n=carol,r=abcdef"))
        assert r == "-ERR [AUTH] Channel binding is supported: possible downgrade, refused"
    finally:
        c.close()


@needs_openssl
def test_no_plus_on_tls12(sasl_site, tls_server):
    srv = tls_server()
    c = SClient(srv.tls_port, tls13=False)
    try:
        assert c.cmd("AUTH SCRAM-SHA-256-PLUS") == "-ERR Unsupported authentication mechanism"
        assert scram_login(c, "carol", SCRAM_PW).startswith("+OK Logged in")
        c.cmd("QUIT")
    finally:
        c.close()


def test_sasl_needs_tls_when_required(sasl_site, tls_server):
    srv = tls_server()
    c = Client(srv.port)
    _, body = c.multi("CAPA")
    assert b"SASL" not in body
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0secret-Plain-1")) == "-ERR [AUTH] TLS is required"
    ev = srv.wait_audit(lambda e: e.get("reason") == "cleartext" and e.get("mech") == "AUTH")
    assert "user" not in ev
    c2 = pop3s(srv)
    _, body = c2.multi("CAPA")
    assert b"SASL PLAIN" in body
