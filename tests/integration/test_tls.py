"""
Issue 3: POP3S (implicit TLS), STLS on the plain port, and no credentials in
clear text.

Every test drives the real posternd with real clients (poplib, curl,
openssl s_client, fetchmail, and a raw socket wrapped by Python's ssl
module) over loopback. Certificates are made once per run with the openssl
command: two unrelated self-signed ones for localhost (A and B, for the
reload test) and a root -> intermediate -> leaf chain (the server is given
the leaf and the intermediate, the client trusts only the root).

Unless a test says otherwise the servers run with TLS configured,
require_tls left at its default (yes) and allow_plaintext_loopback = no, so
that loopback is treated like any other network.
"""

import hashlib
import os
import poplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    ASAN_BIN,
    OPENSSL,
    CRLF,
    HAVE_IPV6,
    RELEASE_BIN,
    SANITIZER_MARKERS,
    Client,
    RssSampler,
    curl,
    free_port,
    needs_curl,
    needs_ipv6,
    needs_openssl,
    to_wire,
    wait_until,
)

FETCHMAIL = shutil.which("fetchmail")
needs_fetchmail = pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail not installed")

# A password that appears nowhere else, so that finding it in a log is
# never a coincidence.
ALICE_PW = "Wr0ng-Pl4ce-f0r-a-S3cret"
BOB_PW = "hunter2"

MSG1 = (b"From: a@example.org\nSubject: first\n\n.leading dot\n..two dots\n.\n"
        b"crlf line\r\nlast line without newline")
MSG2 = b"Subject: second\r\n\r\nbody 2\r\n"
SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
RSS_LIMIT_KIB = 32 * 1024
RSS_GROWTH_KIB = 8 * 1024


# ---------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------

def _openssl(*args, cwd):
    p = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, timeout=60)
    assert p.returncode == 0, f"openssl {args}: {p.stderr.decode(errors='replace')}"


def _self_signed(d: Path, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=localhost/O=Postern test {name}", "-addext", SAN, cwd=d)


def _chain(d: Path):
    ext = d / "ext.cnf"
    ext.write_text(
        "[ca]\nbasicConstraints = critical,CA:true\n"
        "keyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
        "[leaf]\nbasicConstraints = critical,CA:false\n"
        "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
        f"{SAN}\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
        "[client]\nbasicConstraints = critical,CA:false\n"
        "keyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "root.key", "-out", "root.pem", "-days", "2",
             "-subj", "/CN=Postern test root", cwd=d)
    _openssl("req", "-new", *ec, "-keyout", "inter.key", "-out", "inter.csr",
             "-subj", "/CN=Postern test intermediate", cwd=d)
    _openssl("x509", "-req", "-in", "inter.csr", "-CA", "root.pem", "-CAkey", "root.key",
             "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-extensions", "ca",
             "-out", "inter.pem", cwd=d)
    _openssl("req", "-new", *ec, "-keyout", "leaf.key", "-out", "leaf.csr",
             "-subj", "/CN=localhost", cwd=d)
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "inter.pem", "-CAkey", "inter.key",
             "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-extensions", "leaf",
             "-out", "leaf.pem", cwd=d)
    (d / "chain.pem").write_bytes((d / "leaf.pem").read_bytes() + (d / "inter.pem").read_bytes())
    _openssl("req", "-new", *ec, "-keyout", "client.key", "-out", "client.csr",
             "-subj", "/CN=alice client", cwd=d)
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "root.pem", "-CAkey", "root.key",
             "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-extensions", "client",
             "-out", "client.pem", cwd=d)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """{name: (cert path, key path)} for "a", "b" (self-signed), "chain"
    (leaf + intermediate; trust anchor certs["root"][0]) and "client" (a
    client certificate issued by the root)."""
    if OPENSSL is None:
        pytest.skip("openssl command not installed")
    d = tmp_path_factory.mktemp("certs")
    _self_signed(d, "a")
    _self_signed(d, "b")
    _chain(d)
    return {
        "a": (d / "a.pem", d / "a.key"),
        "b": (d / "b.pem", d / "b.key"),
        "chain": (d / "chain.pem", d / "leaf.key"),
        "root": (d / "root.pem", None),
        "client": (d / "client.pem", d / "client.key"),
    }


def der_sha256(pem_path):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(Path(pem_path).read_text())).hexdigest()


def client_ctx(*cafiles, version=None, max_version=None):
    """A verifying client context (hostname checked) trusting cafiles."""
    ctx = ssl.create_default_context(cafile=str(cafiles[0]))
    for extra in cafiles[1:]:
        ctx.load_verify_locations(cafile=str(extra))
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


# ---------------------------------------------------------------------------
# Servers and clients
# ---------------------------------------------------------------------------

def install_cert(site, certs, which):
    """Copies a certificate and key to SITE/tls/cert.pem and key.pem (the
    configuration names them relative to its folder); replaces atomically."""
    d = site.root / "tls"
    d.mkdir(exist_ok=True)
    cert, key = certs[which]
    for src, name in ((cert, "cert.pem"), (key, "key.pem")):
        tmp = d / (name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, d / name)


def listen_both(port):
    return f"127.0.0.1:{port}, [::1]:{port}" if HAVE_IPV6 else f"127.0.0.1:{port}"


@pytest.fixture
def users(site):
    site.add_user("alice", ALICE_PW)
    site.add_user("bob", BOB_PW)
    site.deliver("alice", MSG1)
    site.deliver("alice", MSG2)
    site.deliver("bob", b"Subject: bob\n\nfor bob\n")
    return site


@pytest.fixture
def tls_server(site, users, start_server, certs):
    """Factory: tls_server(cert="a", binary=ASAN_BIN, **overrides) -> Server
    with .tls_port (POP3S) besides .port (POP3 with STLS), and .cafile.
    An override whose value is None removes that key."""

    def start(cert="a", binary=ASAN_BIN, **overrides):
        install_cert(site, certs, cert)
        tls_port = free_port()
        conf = {
            "tls.cert": "tls/cert.pem",
            "tls.key": "tls/key.pem",
            "server.listen_tls": listen_both(tls_port),
            "auth.allow_plaintext_loopback": "no",
        }
        conf.update(overrides)
        conf = {k: v for k, v in conf.items() if v is not None}
        srv = start_server(binary=binary, **conf)
        srv.tls_port = tls_port
        srv.cafile = certs["root" if cert == "chain" else cert][0]
        return srv

    return start


def pop3s(srv, ctx=None, host="127.0.0.1", hostname="localhost", session=None, timeout=10.0):
    """A raw client on the POP3S port; the greeting is read after the
    handshake."""
    ctx = ctx or client_ctx(srv.cafile)
    c = Client(srv.tls_port, host=host, greeting=False, timeout=timeout)
    c.sock = ctx.wrap_socket(c.sock, server_hostname=hostname, session=session)
    c.greeting = c.readline().decode("latin-1")
    return c


def starttls(c, ctx, hostname="localhost", session=None):
    """STLS on a raw plain client, then the handshake."""
    r = c.ok("STLS")
    assert bytes(c.buf) == b"", f"bytes after the STLS answer: {bytes(c.buf)!r}"
    c.sock = ctx.wrap_socket(c.sock, server_hostname=hostname, session=session)
    return r


def stls_client(srv, ctx=None, host="127.0.0.1", session=None, timeout=10.0):
    c = Client(srv.port, host=host, timeout=timeout)
    starttls(c, ctx or client_ctx(srv.cafile), session=session)
    return c


def capa(c):
    _, body = c.multi("CAPA")
    return [line.decode() for line in body.split(CRLF)[:-1]]


def local_port(c):
    return str(c.sock.getsockname()[1])


def audit_for(srv, c_or_port, event, timeout=10, **match):
    """The audit line of one connection (found by its client port)."""
    port = c_or_port if isinstance(c_or_port, str) else local_port(c_or_port)

    def pred(ev):
        return ev.get("event") == event and ev.get("port") == port and all(
            ev.get(k) == v for k, v in match.items())

    return srv.wait_audit(pred, timeout=timeout, what=f"{event} {match} for port {port}")


def events_for(srv, port):
    return [ev for ev in srv.audit_events() if ev.get("port") == port]


def nothing_arrives(c, secs=0.4):
    """Fails if the server sends anything (or closes) within secs."""
    assert bytes(c.buf) == b"", f"unexpected bytes: {bytes(c.buf)!r}"
    c.sock.settimeout(secs)
    try:
        data = c.sock.recv(4096)
    except (socket.timeout, TimeoutError):
        return
    finally:
        c.sock.settimeout(c.timeout)
    pytest.fail(f"server sent {data!r} (b'' = closed) when it should have been silent")


def poplib_body(lines):
    return b"".join(line + CRLF for line in lines)


def check_no_password_logged(srv):
    assert ALICE_PW not in srv.audit_text()
    assert ALICE_PW not in srv.stderr_text()


def stderr_count(srv, needle):
    return srv.stderr_text().count(needle)


def hup(srv, expect):
    """SIGHUP, then waits for one more stderr line containing expect."""
    before = stderr_count(srv, expect)
    srv.send_signal(signal.SIGHUP)
    wait_until(lambda: stderr_count(srv, expect) > before, 10, what=f"stderr {expect!r}")


# ---------------------------------------------------------------------------
# 1. poplib: POP3_SSL and POP3.stls()
# ---------------------------------------------------------------------------

def _check_poplib_session(p):
    p.user("alice")
    p.pass_(ALICE_PW)
    count, _ = p.stat()
    assert count == 2
    for n, msg in ((1, MSG1), (2, MSG2)):
        _, lines, octets = p.retr(n)
        assert poplib_body(lines) == to_wire(msg)
        assert octets == len(to_wire(msg))
    p.quit()


def test_poplib_pop3s(tls_server):
    srv = tls_server()
    p = poplib.POP3_SSL("127.0.0.1", srv.tls_port, context=client_ctx(srv.cafile), timeout=10)
    assert p.getwelcome().startswith(b"+OK")
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps
    port = str(p.sock.getsockname()[1])
    version, cipher = p.sock.version(), p.sock.cipher()[0]
    _check_poplib_session(p)
    audit_for(srv, port, "connect", listener="pop3s")
    audit_for(srv, port, "tls", version=version, cipher=cipher, resumed="no")
    audit_for(srv, port, "auth_ok", user="alice", mech="USER", tls="yes")
    check_no_password_logged(srv)


def test_poplib_stls(tls_server):
    srv = tls_server()
    p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
    port = str(p.sock.getsockname()[1])
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps
    assert p.stls(context=client_ctx(srv.cafile)).startswith(b"+OK")
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps
    _check_poplib_session(p)
    audit_for(srv, port, "connect", listener="pop3")
    audit_for(srv, port, "tls", version="TLSv1.3", resumed="no")
    audit_for(srv, port, "auth_ok", user="alice", tls="yes")


@needs_ipv6
def test_poplib_pop3s_ipv6_verifies_ip_san(tls_server):
    """::1 as the host name: the certificate's IP SAN is what is checked."""
    srv = tls_server()
    p = poplib.POP3_SSL("::1", srv.tls_port, context=client_ctx(srv.cafile), timeout=10)
    _check_poplib_session(p)


def test_full_chain_served(tls_server):
    """cert = leaf + intermediate: a client that trusts only the root
    verifies it, on both ports."""
    srv = tls_server(cert="chain")
    ctx = client_ctx(srv.cafile)
    p = poplib.POP3_SSL("localhost", srv.tls_port, context=ctx, timeout=10)
    _check_poplib_session(p)
    c = stls_client(srv, ctx)
    issuer = dict(x[0] for x in c.sock.getpeercert()["issuer"])
    assert issuer["commonName"] == "Postern test intermediate"
    c.login("alice", ALICE_PW)
    c.quit()


# ---------------------------------------------------------------------------
# 2. curl
# ---------------------------------------------------------------------------

@needs_curl
def test_curl_pop3s(tls_server):
    srv = tls_server()
    url = f"pop3s://localhost:{srv.tls_port}/"
    user = ("--user", f"alice:{ALICE_PW}")
    listing = curl("--cacert", str(srv.cafile), *user, url).stdout
    assert listing == b"1 %d\r\n2 %d\r\n" % (len(to_wire(MSG1)), len(to_wire(MSG2)))
    assert curl("--cacert", str(srv.cafile), *user, url + "1").stdout == to_wire(MSG1)
    assert curl("--cacert", str(srv.cafile), *user, url + "2").stdout == to_wire(MSG2)
    # Without the test certificate curl cannot verify the server.
    p = curl(*user, url, check=False)
    assert p.returncode == 60, p.stderr
    # Reached under another name, the certificate does not match (curl
    # exits 60 or, in older versions, 51).
    p = curl("--cacert", str(srv.cafile), "--connect-to", f"other.invalid:{srv.tls_port}:"
             f"127.0.0.1:{srv.tls_port}", *user, f"pop3s://other.invalid:{srv.tls_port}/",
             check=False)
    assert p.returncode in (51, 60), p.stderr
    assert sum(1 for ev in srv.audit_events() if ev.get("event") == "auth_ok") == 3
    check_no_password_logged(srv)


@needs_curl
def test_curl_starttls(tls_server):
    srv = tls_server()
    user = ("--user", f"alice:{ALICE_PW}")
    url = f"pop3://localhost:{srv.port}/"
    out = curl("--ssl-reqd", "--cacert", str(srv.cafile), *user, url + "1").stdout
    assert out == to_wire(MSG1)
    listing = curl("--ssl-reqd", "--cacert", str(srv.cafile), *user, url).stdout
    assert listing == b"1 %d\r\n2 %d\r\n" % (len(to_wire(MSG1)), len(to_wire(MSG2)))
    ok = [ev for ev in srv.audit_events() if ev.get("event") == "auth_ok"]
    assert len(ok) == 2 and all(ev["tls"] == "yes" for ev in ok)
    # Every plain connection went through TLS before logging in.
    plain = [ev["sid"] for ev in srv.audit_events()
             if ev.get("event") == "connect" and ev["listener"] == "pop3"]
    tls = {ev["sid"] for ev in srv.audit_events() if ev.get("event") == "tls"}
    assert plain and set(plain) <= tls
    # Without the certificate, STARTTLS cannot be verified either.
    p = curl("--ssl-reqd", *user, url, check=False)
    assert p.returncode == 60, p.stderr


# ---------------------------------------------------------------------------
# 3. openssl s_client
# ---------------------------------------------------------------------------

def s_client(args, script):
    p = subprocess.run([OPENSSL, "s_client", *args, "-quiet", "-verify_return_error"],
                       input=script, capture_output=True, timeout=20)
    return p.returncode, p.stdout.decode(errors="replace").splitlines(), p.stderr.decode(
        errors="replace")


SCRIPT = f"USER alice\r\nPASS {ALICE_PW}\r\nSTAT\r\nQUIT\r\n".encode()
STAT_LINE = f"+OK 2 {len(to_wire(MSG1)) + len(to_wire(MSG2))}"


@needs_openssl
def test_s_client_pop3s(tls_server):
    srv = tls_server()
    rc, out, err = s_client(["-connect", f"127.0.0.1:{srv.tls_port}", "-CAfile",
                             str(srv.cafile), "-servername", "localhost",
                             "-verify_hostname", "localhost"], SCRIPT)
    assert rc == 0, err
    assert out[0].startswith("+OK") and "Postern" in out[0]
    assert out[1].startswith("+OK")
    assert out[2].startswith("+OK Logged in")
    assert out[3] == STAT_LINE
    assert out[4].startswith("+OK Bye")
    assert len(out) == 5, out
    # The wrong trust anchor: s_client stops at verification.
    rc, out, err = s_client(["-connect", f"127.0.0.1:{srv.tls_port}", "-CAfile",
                             str(srv.cafile.parent / "b.pem")], SCRIPT)
    assert rc != 0 and not any("Logged in" in line for line in out)


@needs_openssl
def test_s_client_starttls(tls_server):
    srv = tls_server()
    rc, out, err = s_client(["-starttls", "pop3", "-connect", f"127.0.0.1:{srv.port}",
                             "-CAfile", str(srv.cafile), "-verify_ip", "127.0.0.1"], SCRIPT)
    assert rc == 0, err
    # s_client consumed the greeting and the STLS answer itself.
    assert out[0].startswith("+OK")
    assert out[1].startswith("+OK Logged in")
    assert out[2] == STAT_LINE
    assert out[3].startswith("+OK Bye")
    assert len(out) == 4, out
    ok = srv.wait_audit(lambda ev: ev.get("event") == "auth_ok")
    assert ok["tls"] == "yes"
    audit_for(srv, ok["port"], "connect", listener="pop3")
    audit_for(srv, ok["port"], "tls", version="TLSv1.3")


# ---------------------------------------------------------------------------
# 4. fetchmail
# ---------------------------------------------------------------------------

def run_fetchmail(tmp_path, srv, port, options):
    """One fetchmail poll of alice on port with the given command-line
    options; every message goes to a file of its own. Returns (exit
    status, sorted list of the messages delivered, fetchmail's output)."""
    home = tmp_path / "fm-home"
    out = home / "msgs"
    out.mkdir(parents=True, exist_ok=True)
    rc = home / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        "set invisible\n"  # no Received: header added: the bodies compare
        f"poll localhost port {port} protocol pop3 timeout 10\n"
        f"  user \"alice\" there with password \"{ALICE_PW}\" is \"x\" here\n"
        f"  mda \"cat > $(mktemp {out}/m.XXXXXX)\"\n")
    rc.chmod(0o600)
    before = set(out.iterdir())
    env = dict(os.environ, HOME=str(home), LC_ALL="C")
    env.pop("FETCHMAILHOME", None)
    p = subprocess.run([FETCHMAIL, "-f", str(rc), "--nodetach", "-v", "--sslcertck",
                        "--sslcertfile", str(srv.cafile), *options], capture_output=True,
                       env=env, timeout=60, stdin=subprocess.DEVNULL, cwd=str(home))
    log = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    got = sorted(f.read_bytes() for f in set(out.iterdir()) - before)
    return p.returncode, got, log


def lf(msg):
    return to_wire(msg).replace(CRLF, b"\n")


@needs_fetchmail
def test_fetchmail_ssl_then_stls(tmp_path, site, tls_server):
    srv = tls_server()
    original = set(site.message_files("alice"))
    # POP3S, keeping the mail: both messages come, nothing is removed.
    rc, got, log = run_fetchmail(tmp_path, srv, srv.tls_port, ["--ssl", "--keep"])
    assert rc == 0, log
    assert got == sorted([lf(MSG1), lf(MSG2)]), log
    assert set(site.message_files("alice")) == original
    connects = [ev for ev in srv.audit_events() if ev.get("event") == "connect"]
    assert [ev["listener"] for ev in connects] == ["pop3s"]
    # A new message arrives; STLS on the plain port with sslproto, without
    # keep: fetchmail remembers the two it has (UIDL), fetches the new one,
    # and DELE + QUIT removes exactly that one.
    msg3 = b"Subject: third\n\nnew mail\n"
    third = srv.site.deliver("alice", msg3)
    rc, got, log = run_fetchmail(tmp_path, srv, srv.port, ["--sslproto", "TLS1.2+", "--nokeep"])
    assert rc == 0, log
    assert got == [lf(msg3)], log
    assert "STLS" in log
    assert set(site.message_files("alice")) == original
    assert not third.exists()
    evs = srv.audit_events()
    stls_sid = [ev["sid"] for ev in evs if ev.get("event") == "connect"][1]
    mine = {ev["event"]: ev for ev in evs if ev.get("sid") == stls_sid}
    assert mine["connect"]["listener"] == "pop3"
    assert "tls" in mine and mine["auth_ok"]["tls"] == "yes"
    assert mine["quit"]["deleted"] == "1" and mine["dele"]["uidl"] == third.name.split(":")[0]
    check_no_password_logged(srv)


# ---------------------------------------------------------------------------
# 5. STARTTLS command injection (CVE-2011-0411)
# ---------------------------------------------------------------------------

def test_stls_injection_capa(tls_server):
    srv = tls_server()
    c = Client(srv.port)
    c.send(b"STLS\r\nCAPA\r\n")  # one write, nothing read yet
    assert c.readline().startswith(b"+OK")
    # The CAPA sent in clear text is not answered in clear text...
    nothing_arrives(c)
    c.sock = client_ctx(srv.cafile).wrap_socket(c.sock, server_hostname="localhost")
    # ...nor inside TLS: the first thing there is the answer to this CAPA.
    nothing_arrives(c, 0.3)
    caps = capa(c)
    assert "USER" in caps and "STLS" not in caps
    nothing_arrives(c, 0.3)
    assert c.quit().startswith("+OK Bye")
    assert sum(1 for ev in srv.audit_events() if ev.get("event") == "tls") == 1


def test_stls_injection_credentials(tls_server):
    srv = tls_server()
    c = Client(srv.port)
    c.send(f"STLS\r\nUSER alice\r\nPASS {ALICE_PW}\r\n".encode())
    assert c.readline().startswith(b"+OK")
    nothing_arrives(c)
    port = local_port(c)
    c.sock = client_ctx(srv.cafile).wrap_socket(c.sock, server_hostname="localhost")
    # The pipelined USER was never taken: PASS alone fails, no login.
    r = c.err(f"PASS {ALICE_PW}")
    assert "USER" in r
    c.err("STAT")
    assert c.quit().startswith("+OK")
    evs = events_for(srv, port)
    assert not [ev for ev in evs if ev["event"] in ("auth_ok", "auth_fail")], evs
    check_no_password_logged(srv)


def test_stls_forgets_user_given_before(tls_server):
    """Where clear text is allowed, USER before STLS is forgotten by it."""
    srv = tls_server(**{"auth.require_tls": "no"})
    c = Client(srv.port)
    c.ok("USER alice")
    starttls(c, client_ctx(srv.cafile))
    assert "USER" in c.err(f"PASS {ALICE_PW}")
    c.login("alice", ALICE_PW)
    c.quit()


# ---------------------------------------------------------------------------
# 6. require_tls
# ---------------------------------------------------------------------------

def test_require_tls_refuses_cleartext(tls_server):
    """require_tls left at its default (yes), no loopback exemption."""
    srv = tls_server(**{"auth.apop": "yes"})
    c = Client(srv.port)
    port = local_port(c)
    m = re.search(r"<[^>]+>", c.greeting)
    assert m, c.greeting
    caps = capa(c)
    assert "STLS" in caps and "USER" not in caps
    assert c.cmd("USER alice") == "-ERR [AUTH] TLS is required"
    assert c.cmd(f"PASS {ALICE_PW}") == "-ERR [AUTH] TLS is required"
    digest = hashlib.md5((m.group(0) + ALICE_PW).encode()).hexdigest()
    assert c.cmd(f"APOP alice {digest}") == "-ERR [AUTH] TLS is required"
    fails = [audit_for(srv, port, "auth_fail", mech=mech) for mech in ("USER", "PASS", "APOP")]
    for ev in fails:
        assert ev["level"] == "warning" and ev["reason"] == "cleartext" and ev["tls"] == "no"
    assert fails[0]["user"] == "alice" and fails[2]["user"] == "alice"
    assert "user" not in fails[1]  # a PASS argument is a password, not a name
    assert not [ev for ev in events_for(srv, port) if ev["event"] == "auth_ok"]

    starttls(c, client_ctx(srv.cafile))
    caps = capa(c)
    assert "USER" in caps and "STLS" not in caps
    c.ok("USER alice")
    assert c.cmd("PASS not-the-password").startswith("-ERR")
    bad = audit_for(srv, port, "auth_fail", mech="USER", tls="yes")
    assert bad["reason"] == "bad password" and bad["level"] == "info", bad
    c.login("alice", ALICE_PW)
    assert c.stat() == (2, len(to_wire(MSG1)) + len(to_wire(MSG2)))
    c.quit()
    ok = audit_for(srv, port, "auth_ok")
    assert ok["tls"] == "yes" and ok["user"] == "alice"
    # APOP inside TLS, with the timestamp of the clear-text greeting.
    g = Client(srv.port)
    m = re.search(r"<[^>]+>", g.greeting)
    starttls(g, client_ctx(srv.cafile))
    digest = hashlib.md5((m.group(0) + ALICE_PW).encode()).hexdigest()
    g.ok(f"APOP alice {digest}")
    g.quit()
    audit_for(srv, g, "auth_ok", mech="APOP", tls="yes")
    check_no_password_logged(srv)


def test_require_tls_no_allows_cleartext(tls_server):
    srv = tls_server(**{"auth.require_tls": "no"})
    c = Client(srv.port)
    caps = capa(c)
    assert "STLS" in caps and "USER" in caps
    c.login("alice", ALICE_PW)
    assert c.retr(1) == to_wire(MSG1)
    c.quit()
    ev = audit_for(srv, c, "auth_ok")
    assert ev["tls"] == "no" and ev["user"] == "alice"
    assert not [e for e in srv.audit_events() if e.get("reason") == "cleartext"]


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=needs_ipv6)])
def test_loopback_exemption(tls_server, host):
    srv = tls_server(**{"auth.require_tls": "yes", "auth.allow_plaintext_loopback": "yes"})
    c = Client(srv.port, host=host)
    caps = capa(c)
    assert "USER" in caps and "STLS" in caps
    c.login("alice", ALICE_PW)
    assert c.retr(2) == to_wire(MSG2)
    c.quit()
    ev = audit_for(srv, c, "auth_ok")
    assert ev["tls"] == "no" and ev["ip"] == host
    assert not [e for e in srv.audit_events() if e.get("reason") == "cleartext"]


def run_posternd(site, overrides, timeout=5):
    """Runs posternd on a configuration that must stop it at start-up;
    returns (exit status, stderr). A server still running after timeout
    seconds is killed and reported as None."""
    if not ASAN_BIN.exists():
        pytest.skip(f"{ASAN_BIN} not built")
    port = free_port()
    conf = site.write_config(port, overrides, name="notls.conf")
    proc = subprocess.Popen([str(ASAN_BIN), "-c", str(conf), "-f"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=str(site.root))
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        return None, err.decode(errors="replace")
    err = err.decode(errors="replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err
    return proc.returncode, err


def test_require_tls_without_tls_refuses_to_start(site, users):
    rc, err = run_posternd(site, {"auth.allow_plaintext_loopback": "no"})
    assert rc is not None and rc != 0, f"posternd started although nobody could log in:\n{err}"
    assert "ready:" not in err
    assert "require_tls" in err and "tls" in err.lower() and "notls.conf" in err, err
    rc, err = run_posternd(site, {"auth.allow_plaintext_loopback": "no",
                                  "auth.require_tls": "yes"})
    assert rc not in (None, 0)
    assert re.search(r"notls\.conf:\d+: \[auth\] require_tls", err), err


def test_require_tls_without_tls_loopback_warns(site, users, start_server):
    srv = start_server(**{"auth.require_tls": "yes", "auth.allow_plaintext_loopback": "yes"})
    warn = [line for line in srv.stderr_text().splitlines() if "require_tls" in line]
    assert warn and "warning" in warn[0], srv.stderr_text()
    c = srv.client()
    caps = capa(c)
    assert "STLS" not in caps and "USER" in caps
    c.login("alice", ALICE_PW)
    c.quit()
    assert audit_for(srv, c, "auth_ok")["tls"] == "no"


# ---------------------------------------------------------------------------
# 7. STLS in the wrong states
# ---------------------------------------------------------------------------

def test_stls_twice(tls_server):
    srv = tls_server()
    c = stls_client(srv)
    assert c.cmd("STLS").startswith("-ERR")
    nothing_arrives(c, 0.2)
    c.login("alice", ALICE_PW)  # still a working TLS session
    assert c.retr(1) == to_wire(MSG1)
    c.quit()


def test_stls_in_transaction(tls_server):
    srv = tls_server(**{"auth.require_tls": "no"})
    c = Client(srv.port)
    c.login("alice", ALICE_PW)
    assert c.cmd("STLS").startswith("-ERR")
    # Still clear text, still TRANSACTION.
    assert c.stat()[0] == 2
    # Announced in both states (RFC 2595 section 4), refused after login.
    assert "STLS" in capa(c)
    c.quit()
    assert not [ev for ev in events_for(srv, local_port(c)) if ev["event"] == "tls"]


def test_stls_on_pop3s(tls_server):
    srv = tls_server()
    c = pop3s(srv)
    assert "STLS" not in capa(c)
    assert c.cmd("STLS").startswith("-ERR")
    c.login("alice", ALICE_PW)
    c.quit()


def test_stls_without_tls_configured(site, users, start_server):
    srv = start_server(**{"auth.require_tls": "no"})
    c = srv.client()
    assert "STLS" not in capa(c)
    assert c.cmd("STLS").startswith("-ERR")
    nothing_arrives(c, 0.2)
    c.login("alice", ALICE_PW)
    c.quit()


# ---------------------------------------------------------------------------
# 8. Broken handshakes
# ---------------------------------------------------------------------------

GARBAGE = b"USER alice\r\nPASS x\r\n" + bytes(range(256)) * 4


def check_closed_by_garbage(srv, c, port):
    t0 = time.monotonic()
    got = c.wait_closed(timeout=5)
    assert time.monotonic() - t0 < 4
    # Nothing in clear text; at most a TLS alert record.
    assert got == b"" or got[0] == 0x15, got[:64]
    ev = audit_for(srv, port, "disconnect")
    assert "TLS handshake" in ev["reason"], ev
    assert not [e for e in events_for(srv, port) if e["event"] in ("tls", "auth_ok", "auth_fail")]


def check_still_serving(srv):
    c = pop3s(srv)
    c.login("alice", ALICE_PW)
    assert c.retr(1) == to_wire(MSG1)
    c.quit()
    c = stls_client(srv)
    c.login("bob", BOB_PW)
    c.quit()


def test_garbage_instead_of_client_hello_pop3s(tls_server):
    srv = tls_server()
    c = Client(srv.tls_port, greeting=False)
    nothing_arrives(c, 0.2)  # POP3S: no greeting before the handshake
    c.send(GARBAGE)
    check_closed_by_garbage(srv, c, local_port(c))
    check_still_serving(srv)


def test_garbage_instead_of_client_hello_stls(tls_server):
    srv = tls_server()
    c = Client(srv.port)
    c.ok("STLS")
    c.send(GARBAGE)
    check_closed_by_garbage(srv, c, local_port(c))
    check_still_serving(srv)


def test_truncated_client_hello_then_hangup(tls_server):
    """Half a ClientHello, then the client goes away."""
    srv = tls_server()
    raw = Client(srv.tls_port, greeting=False)
    port = local_port(raw)
    # The start of a real handshake record, cut short.
    raw.send(bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]))
    time.sleep(0.1)
    raw.close()
    ev = audit_for(srv, port, "disconnect")
    assert "TLS handshake failed" in ev["reason"], ev
    check_still_serving(srv)


@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_silent_client_ended_by_login_timeout(tls_server, how):
    srv = tls_server(**{"limits.login_timeout": "1"})
    if how == "pop3s":
        c = Client(srv.tls_port, greeting=False)
    else:
        c = Client(srv.port)
        c.ok("STLS")
    port = local_port(c)
    t0 = time.monotonic()
    got = c.wait_closed(timeout=6)
    elapsed = time.monotonic() - t0
    assert got == b"", got  # no clear-text message inside a TLS channel
    assert 0.5 <= elapsed < 4, elapsed
    ev = audit_for(srv, port, "disconnect")
    assert "timeout" in ev["reason"] and "handshake" in ev["reason"], ev
    # A client that does the handshake in time is not affected.
    c = pop3s(srv)
    c.login("alice", ALICE_PW)
    c.quit()


# ---------------------------------------------------------------------------
# 9. Reload on SIGHUP
# ---------------------------------------------------------------------------

def test_reload_certificate(site, certs, tls_server):
    srv = tls_server(cert="a")
    fp_a, fp_b = der_sha256(certs["a"][0]), der_sha256(certs["b"][0])
    assert fp_a != fp_b
    both = client_ctx(certs["a"][0], certs["b"][0])

    def fingerprint(c):
        return hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()

    old_s = pop3s(srv, both)
    old_s.login("alice", ALICE_PW)
    old_p = stls_client(srv, both)
    old_p.login("bob", BOB_PW)
    assert fingerprint(old_s) == fingerprint(old_p) == fp_a

    # Certificate B, then SIGHUP: open sessions go on, new ones see B.
    install_cert(site, certs, "b")
    hup(srv, "reloaded")
    assert old_s.retr(1) == to_wire(MSG1)
    assert old_p.retr(1) == b"Subject: bob\r\n\r\nfor bob\r\n"
    for c in (pop3s(srv, both), stls_client(srv, both)):
        assert fingerprint(c) == fp_b
        c.close()
    # A client that trusts only A can no longer connect.
    with pytest.raises(ssl.SSLCertVerificationError):
        pop3s(srv, client_ctx(certs["a"][0]))

    # A broken certificate: the error is logged, B stays.
    (site.root / "tls" / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n")
    hup(srv, "keeping the certificate")
    err = [line for line in srv.stderr_text().splitlines() if "keeping the certificate" in line]
    assert "cert.pem" in err[-1], err[-1]
    # A certificate that does not match the key: the same.
    shutil.copyfile(certs["a"][0], site.root / "tls" / "cert.pem")
    hup(srv, "keeping the certificate")
    assert srv.alive()
    c = pop3s(srv, both)
    assert fingerprint(c) == fp_b
    c.close()
    c = stls_client(srv, both)
    assert fingerprint(c) == fp_b
    c.close()

    # The sessions opened before any reload are still fine, and end well.
    assert old_s.retr(2) == to_wire(MSG2)
    assert old_s.quit().startswith("+OK Bye")
    assert old_p.quit().startswith("+OK Bye")
    # And a good certificate is taken again after the failures.
    install_cert(site, certs, "a")
    hup(srv, "reloaded")
    c = pop3s(srv, both)
    assert fingerprint(c) == fp_a
    c.login("alice", ALICE_PW)
    c.quit()
    assert srv.alive()


# ---------------------------------------------------------------------------
# 10. Versions, ciphers, session resumption
# ---------------------------------------------------------------------------

def connect(srv, how, ctx, session=None):
    c = pop3s(srv, ctx, session=session) if how == "pop3s" else stls_client(srv, ctx, session=session)
    # TLS 1.3: the ticket comes after the handshake; reading an answer
    # makes sure it has been processed.
    capa(c)
    return c


@pytest.mark.parametrize("how", ["pop3s", "stls"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls1.2", "tls1.3"])
def test_session_resumption(tls_server, how, version):
    srv = tls_server()
    ctx = client_ctx(srv.cafile, version=version)
    first = connect(srv, how, ctx)
    assert not first.sock.session_reused
    session = first.sock.session
    assert session is not None
    first.quit()
    second = connect(srv, how, ctx, session=session)
    assert second.sock.session_reused
    assert second.sock.version() == first.sock.version() == {
        ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    second.login("alice", ALICE_PW)
    second.quit()
    audit_for(srv, first, "tls", resumed="no", version=first.sock.version())
    audit_for(srv, second, "tls", resumed="yes", version=second.sock.version())
    assert audit_for(srv, second, "auth_ok")["tls"] == "yes"
    # The ticket keys survive a reload: the session resumes after SIGHUP.
    hup(srv, "reloaded")
    third = connect(srv, how, ctx, session=second.sock.session or session)
    assert third.sock.session_reused
    third.quit()


def test_min_version_13(tls_server):
    srv = tls_server(**{"tls.min_version": "1.3"})
    old = client_ctx(srv.cafile, max_version=ssl.TLSVersion.TLSv1_2)
    for how in ("pop3s", "stls"):
        raw = Client(srv.tls_port, greeting=False) if how == "pop3s" else Client(srv.port)
        if how == "stls":
            raw.ok("STLS")
        port = local_port(raw)
        with pytest.raises(ssl.SSLError):
            old.wrap_socket(raw.sock, server_hostname="localhost")
        raw.close()
        ev = audit_for(srv, port, "disconnect")
        assert "TLS handshake failed" in ev["reason"], ev
    c = pop3s(srv)
    assert c.sock.version() == "TLSv1.3"
    c.login("alice", ALICE_PW)
    c.quit()
    # (That the default, 1.2, lets TLS 1.2 clients in is shown by
    # test_session_resumption[tls1.2-*].)


def test_default_ciphersuite_order(tls_server):
    """Without [tls] ciphersuites the server's order puts AES-128-GCM first,
    though OpenSSL clients ask for AES-256-GCM first; the other two suites
    stay on for clients that want only them."""
    srv = tls_server()
    c = pop3s(srv, client_ctx(srv.cafile, version=ssl.TLSVersion.TLSv1_3))
    assert c.sock.cipher()[0] == "TLS_AES_128_GCM_SHA256"
    c.close()
    for suite in ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):
        out = subprocess.run(
            [OPENSSL, "s_client", "-connect", f"127.0.0.1:{srv.tls_port}",
             "-tls1_3", "-ciphersuites", suite, "-CAfile", str(srv.cafile), "-brief",
             "-ign_eof"],
            input=b"QUIT\r\n", capture_output=True, timeout=20)
        assert b"+OK" in out.stdout, out
        assert f"Ciphersuite: {suite}".encode() in out.stderr, out.stderr


def test_ciphers_and_ciphersuites(tls_server):
    srv = tls_server(**{"tls.ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305",
                        "tls.ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"})
    c13 = pop3s(srv, client_ctx(srv.cafile, version=ssl.TLSVersion.TLSv1_3))
    assert c13.sock.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
    c12 = pop3s(srv, client_ctx(srv.cafile, version=ssl.TLSVersion.TLSv1_2))
    assert c12.sock.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305"
    audit_for(srv, c13, "tls", cipher="TLS_CHACHA20_POLY1305_SHA256", version="TLSv1.3")
    audit_for(srv, c12, "tls", cipher="ECDHE-ECDSA-CHACHA20-POLY1305", version="TLSv1.2")
    c13.close()
    c12.close()


def test_client_certificate_optional(tls_server, certs):
    """[tls] ca: a client certificate is asked for, checked and logged;
    a client without one still gets in with its password."""
    srv = tls_server(**{"tls.ca": str(certs["root"][0])})
    plain = pop3s(srv)
    plain.login("alice", ALICE_PW)
    plain.quit()
    ev = audit_for(srv, plain, "tls")
    assert "client_cert" not in ev
    ctx = client_ctx(srv.cafile)
    ctx.load_cert_chain(str(certs["client"][0]), str(certs["client"][1]))
    for c in (pop3s(srv, ctx), stls_client(srv, ctx)):
        c.login("bob", BOB_PW)
        c.quit()
        ev = audit_for(srv, c, "tls")
        assert ev["client_cert"] == "/CN=alice client" and ev["client_cert_ok"] == "yes", ev
    # A certificate the CAs do not vouch for: still let in (the password is
    # the credential), and the failed check is logged.
    ctx = client_ctx(srv.cafile)
    ctx.load_cert_chain(str(certs["a"][0]), str(certs["a"][1]))
    c = pop3s(srv, ctx)
    c.login("bob", BOB_PW)
    c.quit()
    ev = audit_for(srv, c, "tls")
    assert ev["client_cert_ok"] == "no" and "self-signed" in ev["client_cert_error"], ev


@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_close_without_close_notify_is_an_ordinary_close(tls_server, how):
    """Many clients just close the socket: that is the client leaving, not
    a TLS error, and what it asked for before is still done."""
    srv = tls_server()
    c = pop3s(srv) if how == "pop3s" else stls_client(srv)
    c.login("alice", ALICE_PW)
    port = local_port(c)
    # Close the TCP socket under the TLS layer: no close_notify goes out.
    socket.socket(fileno=c.sock.detach()).close()
    ev = audit_for(srv, port, "disconnect")
    assert ev["reason"] == "client closed", ev


# ---------------------------------------------------------------------------
# 11. Backpressure through TLS (release build)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def twenty_mb():
    import base64
    import random
    body = base64.encodebytes(random.Random(20).randbytes(15_000_000)).replace(b"\nA", b"\n.A")
    msg = b"Subject: twenty megabytes\n\n" + body
    wire = to_wire(msg)
    assert len(wire) > 20_000_000
    return msg, len(wire), hashlib.sha256(wire).hexdigest()


@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_backpressure_over_tls(site, users, tls_server, twenty_mb, how):
    msg, size, digest = twenty_mb
    path = site.deliver("alice", msg)
    try:
        srv = tls_server(binary=RELEASE_BIN)
        c = pop3s(srv, timeout=60) if how == "pop3s" else stls_client(srv, timeout=60)
        c.login("alice", ALICE_PW)
        assert c.listing("LIST")[3] == size
        base = srv.rss_kib()
        sampler = RssSampler(srv.pid)
        sampler.start()
        c.send(b"RETR 3\r\n")
        time.sleep(0.5)
        # Another TLS client is served while this one is stalled.
        other = stls_client(srv) if how == "pop3s" else pop3s(srv)
        other.login("bob", BOB_PW)
        assert other.retr(1) == b"Subject: bob\r\n\r\nfor bob\r\n"
        other.quit()
        time.sleep(1.5)
        stalled = max(sampler.samples)
        assert c.readline() == b"+OK %d octets" % size
        body = c.read_multiline(timeout=60)
        peak = sampler.stop()
        assert len(body) == size and hashlib.sha256(body).hexdigest() == digest
        del body
        assert stalled < RSS_LIMIT_KIB, f"VmRSS {stalled} KiB while the reader stalled"
        assert peak < RSS_LIMIT_KIB, f"VmRSS peaked at {peak} KiB"
        # 20 MB queued in memory could still fit under the absolute limit
        # (the idle server uses about 8 MiB): the growth is bounded too.
        assert peak - base < RSS_GROWTH_KIB, f"VmRSS grew from {base} to {peak} KiB"
        assert c.retr(2) == to_wire(MSG2)
        c.quit()
    finally:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Limits that must hold inside TLS too
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_idle_timeout_inside_tls(tls_server, how):
    srv = tls_server(**{"limits.idle_timeout": "1"})
    c = pop3s(srv) if how == "pop3s" else stls_client(srv)
    c.login("alice", ALICE_PW)
    t0 = time.monotonic()
    assert c.readline(timeout=5) == b"-ERR Disconnected for inactivity"
    assert 0.5 <= time.monotonic() - t0 < 4
    assert c.wait_closed(timeout=5) == b""
    assert audit_for(srv, c, "disconnect")["reason"] == "idle timeout"
    assert len(srv.site.message_files("alice")) == 2


@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_line_limit_inside_tls(tls_server, how):
    srv = tls_server(**{"limits.max_line": "512"})
    c = pop3s(srv) if how == "pop3s" else stls_client(srv)
    c.send(b"USER " + b"a" * 2000 + b"\r\n")
    assert c.readline() == b"-ERR Line too long"
    assert c.wait_closed(timeout=5) == b""
    check_still_serving(srv)


def test_failed_handshakes_release_connection_slots(tls_server):
    """Handshakes that fail or time out give their per-IP slot back."""
    srv = tls_server(**{"limits.max_connections_per_ip": "2", "limits.login_timeout": "1"})
    for _ in range(3):
        c = Client(srv.tls_port, greeting=False)
        c.send(GARBAGE)
        c.wait_closed(timeout=5)
        c = Client(srv.port)
        c.ok("STLS")
        c.send(GARBAGE)
        c.wait_closed(timeout=5)
    silent = [Client(srv.tls_port, greeting=False) for _ in range(2)]
    for c in silent:
        c.wait_closed(timeout=5)
    wait_until(lambda: sum(1 for ev in srv.audit_events() if ev.get("event") == "disconnect")
               == 8, 5, what="8 disconnect lines")
    # Two slots are free again: two logins at the same time.
    a = pop3s(srv)
    b = stls_client(srv)
    a.login("alice", ALICE_PW)
    b.login("bob", BOB_PW)
    a.quit()
    b.quit()


def test_sighup_reopens_audit_log(tls_server):
    srv = tls_server()
    c = pop3s(srv)
    c.login("alice", ALICE_PW)
    rotated = srv.audit_path.with_name("audit.log.1")
    os.replace(srv.audit_path, rotated)
    hup(srv, "reloaded")
    d = stls_client(srv)
    d.login("bob", BOB_PW)
    d.quit()
    c.quit()  # a session from before the rotation logs to the new file too
    audit_for(srv, d, "auth_ok", tls="yes")
    audit_for(srv, c, "quit")
    old = rotated.read_text()
    assert "event=auth_ok" in old and "user=\"bob\"" not in old


@pytest.mark.parametrize("how", ["pop3s", "stls"])
def test_stalled_reader_inside_tls_times_out(site, tls_server, how):
    """A client that stops reading in the middle of a RETR is ended by
    idle_timeout (the write side stalls), and nothing is removed."""
    site.deliver("alice", b"Subject: big\n\n" + (b"x" * 75 + b"\n") * 60000)
    srv = tls_server(**{"limits.idle_timeout": "1"})
    c = pop3s(srv) if how == "pop3s" else stls_client(srv)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.login("alice", ALICE_PW)
    c.ok("DELE 1")
    c.send(b"RETR 3\r\n")
    t0 = time.monotonic()
    ev = audit_for(srv, c, "disconnect", timeout=8)
    assert ev["reason"] == "timeout", ev
    assert time.monotonic() - t0 < 5
    c.close()
    assert len(site.message_files("alice")) == 3


class RecordClient:
    """A POP3S client on memory BIOs, so the test decides which TLS records
    reach the server in one TCP segment."""

    def __init__(self, srv):
        self.sock = socket.create_connection(("127.0.0.1", srv.tls_port), timeout=5)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = client_ctx(srv.cafile).wrap_bio(self.inc, self.out,
                                                    server_hostname="localhost")
        self.buf = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.pump()
        # The client's Finished is still in self.out: whatever is written
        # next travels in the same segment.

    def flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def pump(self):
        data = self.sock.recv(65536)
        assert data, "server closed the connection"
        self.inc.write(data)

    def write_records(self, *records):
        """One TLS record per item, all sent with a single send()."""
        for r in records:
            self.tls.write(r)
        self.flush()

    def read_until(self, end, deadline=5.0):
        t_end = time.monotonic() + deadline
        while end not in self.buf:
            try:
                self.buf += self.tls.read(65536)
                continue
            except ssl.SSLWantReadError:
                pass
            assert time.monotonic() < t_end, f"no {end!r} in {self.buf!r}"
            try:
                self.pump()
            except socket.timeout:
                pytest.fail(f"the server stalled; got {self.buf!r}")
        head, _, self.buf = self.buf.partition(end)
        return head + end


def test_pop3s_command_with_client_finished(tls_server):
    """A command that arrives with the client's Finished is answered:
    records OpenSSL has read ahead wake no epoll, so the server must look
    for them itself."""
    srv = tls_server()
    c = RecordClient(srv)
    c.write_records(b"CAPA\r\n")
    assert c.read_until(b"\r\n").startswith(b"+OK")
    capa_reply = c.read_until(b"\r\n.\r\n")
    assert capa_reply.startswith(b"+OK") and b"USER\r\n" in capa_reply


def test_pop3s_pipelined_records(tls_server):
    """Commands pipelined in separate TLS records within one TCP segment
    are all answered, in order, through a login that waits for the
    password check."""
    srv = tls_server()
    c = RecordClient(srv)
    c.write_records()
    assert c.read_until(b"\r\n").startswith(b"+OK")
    c.write_records(b"USER alice\r\n", f"PASS {ALICE_PW}\r\n".encode(), b"STAT\r\n",
                    b"UIDL 1\r\n", b"QUIT\r\n")
    replies = [c.read_until(b"\r\n") for _ in range(5)]
    assert all(r.startswith(b"+OK") for r in replies), replies
    assert replies[2].startswith(b"+OK 2 ")
    audit_for(srv, str(c.sock.getsockname()[1]), "quit")


@pytest.mark.parametrize("how", ["pop3s", "stls", "plain"])
def test_reply_backlog_client_not_reading(tls_server, how):
    """A client that pipelines commands and stops reading fills the socket:
    replies the server writes straight to the socket then meet a full one
    (OpenSSL must retry the very same record) and queue behind it. Every
    reply still arrives, whole and in order, once the client reads."""
    srv = tls_server(**{"auth.allow_plaintext_loopback": "yes"})
    c = {"pop3s": pop3s, "stls": stls_client, "plain": lambda s: Client(s.port)}[how](srv)
    c.login("alice", ALICE_PW)
    assert bytes(c.buf) == b""
    n = 3000000
    data = b"NOOP\r\n" * n
    want = b"+OK\r\n" * n
    sent, got = 0, bytearray()
    # Send without reading until the server stops taking input: its
    # replies have filled the socket and its own output limit.
    c.sock.settimeout(0.5)
    try:
        while sent < len(data):
            sent += c.sock.send(data[sent:sent + 16384])
    except (socket.timeout, ssl.SSLWantWriteError):
        pass
    assert sent < len(data), "the server read everything without the client reading"
    print(f"sent {sent} bytes before the server stopped reading")
    # Then: take every reply to what was sent, send the next 128 KiB.
    c.sock.settimeout(20)
    while True:
        while len(got) < sent // 6 * 5:
            chunk = c.sock.recv(65536)
            assert chunk, "connection closed"
            got += chunk
        if sent == len(data):
            break
        c.sock.sendall(data[sent:sent + 131072])
        sent = min(len(data), sent + 131072)
    assert len(got) == len(want) and bytes(got) == want
    c.sock.settimeout(10)
    c.quit()
