"""
Issue 6, metrics: `[metrics] listen` serves the Prometheus text format
0.0.4 at GET /metrics. Every scrape is parsed strictly (every sample line
`name{labels} value`, every family with HELP and TYPE before its samples,
histograms cumulative with +Inf equal to _count), and the values must move
by exactly what the test did over POP3.
"""

import base64
import math
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import OPENSSL, Client, free_port, run_posternd_conf, to_wire, wait_until

PASSWORD = "m3trics-Pa55"
MSG1 = b"Subject: one\n\nfirst message\n.dot line\n"
MSG2 = b"Subject: two\r\n\r\nsecond\r\n"

# Direct connections only: a proxy from the environment must not answer.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------
# The exposition format, strictly
# ---------------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{({_LABEL}(?:,{_LABEL})*)\}})? (\S+)$")
_HELP = re.compile(rf"^# HELP ({_NAME}) (\S.*)$")
_TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")
_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """{(name, frozenset of label items): value}; raises AssertionError on
    any deviation from the format."""
    assert text.endswith("\n"), "the last line must end with a newline"
    lines = text.split("\n")[:-1]
    types = {}
    samples = {}
    family = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        m = _HELP.match(line)
        if m:
            name = m.group(1)
            assert name.startswith("postern_"), line
            assert name not in types, f"family {name} twice"
            assert i < len(lines), f"HELP without TYPE: {line}"
            t = _TYPE.match(lines[i])
            assert t and t.group(1) == name, f"TYPE must follow HELP: {lines[i]!r}"
            i += 1
            types[name] = t.group(2)
            if t.group(2) == "counter":
                assert name.endswith("_total"), f"counter {name} must end in _total"
            family = name
            continue
        assert not line.startswith("#"), f"comment other than HELP+TYPE: {line!r}"
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        pairs = _LABEL_PAIR.findall(labels or "")
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"label twice: {line!r}"
        v = float(value)
        assert not math.isnan(v), line
        assert family is not None, f"sample before any HELP: {line!r}"
        kind = types[family]
        if kind == "histogram":
            assert name in (family + "_bucket", family + "_sum", family + "_count"), line
            assert ("le" in keys) == (name == family + "_bucket"), line
        else:
            assert name == family, f"{name} outside its family {family}"
            assert "le" not in keys
        if kind == "counter":
            assert v >= 0 and v == int(v), line
        key = (name, frozenset(pairs))
        assert key not in samples, f"series twice: {line!r}"
        samples[key] = v
    _check_histograms(types, samples)
    return samples


def _check_histograms(types, samples):
    for family, kind in types.items():
        if kind != "histogram":
            continue
        series = {}
        for (name, labels), v in samples.items():
            if name == family + "_bucket":
                rest = frozenset(p for p in labels if p[0] != "le")
                le = dict(labels)["le"]
                series.setdefault(rest, []).append((float(le), v))
        assert series, f"histogram {family} without buckets"
        for rest, buckets in series.items():
            buckets.sort()
            assert buckets[-1][0] == math.inf, f"{family}{set(rest)}: no +Inf bucket"
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), f"{family}{set(rest)}: buckets not cumulative"
            assert samples[(family + "_count", rest)] == counts[-1]
            assert (family + "_sum", rest) in samples


def get(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no series {name}{labels}"
    return samples[key]


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

def http(port, path="/metrics", method="GET"):
    """(status, headers, body str)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with _opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def scrape(port):
    status, headers, body = http(port)
    assert status == 200, (status, body)
    ctype = headers["Content-Type"]
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    return parse_exposition(body)


def delta(before, after):
    """Counter and histogram movements between two scrapes (after - before)."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

@pytest.fixture
def metered(site, start_server):
    site.add_user("alice", PASSWORD)
    site.add_user("bob", "hunter2")
    site.deliver("alice", MSG1)
    site.deliver("alice", MSG2)
    port = free_port()
    srv = start_server(**{"metrics.listen": f"127.0.0.1:{port}"})
    srv.metrics_port = port
    return srv


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if OPENSSL is None:
        pytest.skip("openssl command not installed")
    d = tmp_path_factory.mktemp("metrics-cert")
    p = subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2", "-subj",
         "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        cwd=d, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return d / "cert.pem", d / "key.pem"


def open_connections(samples):
    return sum(v for (name, _), v in samples.items() if name == "postern_connections_open")


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def test_values_move_by_what_the_sessions_did(metered):
    srv = metered
    port = srv.metrics_port
    before = scrape(port)
    assert open_connections(before) == 0
    assert get(before, "postern_sessions", state="authorization") == 0

    c = srv.client()
    c.ok("USER alice")
    c.err("PASS wrong-password")
    c.login("alice", PASSWORD)
    # A second session for the same mailbox: [IN-USE].
    c2 = srv.client()
    c2.ok("USER alice")
    assert "[IN-USE]" in c2.err(f"PASS {PASSWORD}")

    during = scrape(port)
    assert get(during, "postern_sessions", state="transaction") == 1
    assert get(during, "postern_sessions", state="authorization") == 1
    assert get(during, "postern_sessions", state="update") == 0
    assert get(during, "postern_connections_open", listener="pop3", tls="no") == 2

    assert c.retr(1) == to_wire(MSG1)
    c.ok("DELE 2")
    assert c.quit().startswith("+OK")
    c2.quit()

    # AUTH PLAIN with an initial response: one line, one command.
    c3 = srv.client()
    plain = base64.b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
    c3.ok(f"AUTH PLAIN {plain}")
    c3.quit()

    # The server notices the ends asynchronously.
    wait_until(lambda: open_connections(scrape(port)) == 0, 10, what="connections to close")
    after = scrape(port)
    d = delta(before, after)

    assert get(after, "postern_connections_total", listener="pop3") - \
        get(before, "postern_connections_total", listener="pop3") == 3
    assert get(after, "postern_connections_total", listener="pop3s") == 0
    for state in ("authorization", "transaction", "update"):
        assert get(after, "postern_sessions", state=state) == 0

    logins = {dict(labels)["mech"] + "/" + dict(labels)["result"]: v
              for (name, labels), v in d.items() if name == "postern_logins_total"}
    assert logins == {"USER/fail": 1, "USER/ok": 1, "USER/in_use": 1, "PLAIN/ok": 1}
    assert d[("postern_login_duration_seconds_count", frozenset())] == 4

    assert d[("postern_messages_retrieved_total", frozenset())] == 1
    assert d[("postern_retrieved_bytes_total", frozenset())] == len(to_wire(MSG1))
    assert d[("postern_messages_deleted_total", frozenset())] == 1

    commands = {dict(labels)["command"]: v for (name, labels), v in d.items()
                if name == "postern_command_duration_seconds_count"}
    assert commands == {"USER": 3, "PASS": 3, "RETR": 1, "DELE": 1, "QUIT": 3, "AUTH": 1}

    # Nothing the guard counts moved.
    assert get(after, "postern_bans_active") == 0
    assert all(v == 0 for (name, _), v in after.items() if name == "postern_alerts_total")
    # Every family is there.
    families = {name for (name, _) in after}
    for fam in ("postern_connections_open", "postern_connections_total",
                "postern_tls_handshakes_total", "postern_sessions", "postern_logins_total",
                "postern_login_duration_seconds_bucket", "postern_messages_retrieved_total",
                "postern_retrieved_bytes_total", "postern_messages_deleted_total",
                "postern_bans_active", "postern_alerts_total",
                "postern_command_duration_seconds_bucket"):
        assert fam in families, fam


def test_http_answers(metered):
    port = metered.metrics_port
    status, headers, body = http(port)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    parse_exposition(body)
    # A query string does not change the path.
    assert http(port, "/metrics?name[]=x")[0] == 200
    for path in ("/", "/metric", "/metrics/", "/metricsx", "/other"):
        status, _, body = http(port, path)
        assert status == 404, path
        assert "/metrics" in body
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        status, headers, _ = http(port, method=method)
        assert status == 405, method
        assert headers["Allow"] == "GET, HEAD"
    status, headers, body = http(port, method="HEAD")
    assert status == 200 and body == ""


def test_scrapes_do_not_stop_pop3_and_sigterm_ends_cleanly(metered):
    """A scraper that connects and sends nothing holds no I/O thread, and
    SIGTERM still ends the server at once (teardown checks sanitizers)."""
    srv = metered
    idle = socket.create_connection(("127.0.0.1", srv.metrics_port), timeout=5)
    idle.sendall(b"GET /metr")
    with srv.client() as c:
        c.login("bob", "hunter2")
        c.quit()
    assert scrape(srv.metrics_port)[("postern_logins_total",
                                     frozenset({("mech", "USER"), ("result", "ok")}))] == 1
    t0 = time.monotonic()
    assert srv.stop(signal.SIGTERM) == 0
    srv.stopped_by_test = True
    assert time.monotonic() - t0 < 5
    idle.close()


def test_tls_labels(site, start_server, cert):
    site.add_user("alice", PASSWORD)
    tls_port, mport = free_port(), free_port()
    srv = start_server(**{
        "metrics.listen": f"localhost:{mport}",
        "tls.cert": str(cert[0]),
        "tls.key": str(cert[1]),
        "server.listen_tls": f"127.0.0.1:{tls_port}",
    })
    ctx = ssl.create_default_context(cafile=str(cert[0]))
    ctx.check_hostname = False

    # POP3S: TLS from the start.
    s = Client(tls_port, greeting=False)
    s.sock = ctx.wrap_socket(s.sock)
    assert s.readline().startswith(b"+OK")
    # STLS on the plain port, and one plain connection that stays plain.
    u = srv.client()
    u.ok("STLS")
    u.sock = ctx.wrap_socket(u.sock)
    u.multi("CAPA")  # the server has finished its side of the handshake
    p = srv.client()
    m = scrape(mport)
    assert get(m, "postern_connections_open", listener="pop3s", tls="yes") == 1
    assert get(m, "postern_connections_open", listener="pop3s", tls="no") == 0
    assert get(m, "postern_connections_open", listener="pop3", tls="yes") == 1
    assert get(m, "postern_connections_open", listener="pop3", tls="no") == 1
    assert get(m, "postern_connections_total", listener="pop3s") == 1
    assert get(m, "postern_connections_total", listener="pop3") == 2
    assert get(m, "postern_tls_handshakes_total", listener="pop3s") == 1
    assert get(m, "postern_tls_handshakes_total", listener="pop3") == 1
    assert get(m, "postern_command_duration_seconds_count", command="STLS") == 1
    s.login("alice", PASSWORD)
    assert get(scrape(mport), "postern_sessions", state="transaction") == 1
    for c in (s, u, p):
        c.quit()
    wait_until(lambda: open_connections(scrape(mport)) == 0, 10, what="connections to close")
    assert get(scrape(mport), "postern_sessions", state="transaction") == 0


CONF = """\
[server]
listen = 127.0.0.1:{port}
threads = 1
[auth]
passdb = passwd-file:users
allow_plaintext_loopback = yes
[mail]
location = maildir:mail/%u/Maildir
[metrics]
listen = {metrics}
[log]
audit = audit.log
"""


@pytest.mark.parametrize("value,why", [
    ("9110", "expected ADDRESS:PORT"),
    ("127.0.0.1:0", "port must be 1-65535"),
    ("127.0.0.1:65536", "port must be 1-65535"),
    ("::1:9110", "IPv6 addresses in brackets"),
    ("127.0.0.1:9110, 127.0.0.1:9111", "one ADDRESS:PORT"),
])
def test_bad_listen_value_names_key_and_line(site, value, why):
    site.add_user("alice", PASSWORD)
    rc, err, path = run_posternd_conf(site, CONF.format(port=free_port(), metrics=value))
    assert rc != 0
    assert f"{path}:10: [metrics] listen" in err, err
    assert why in err, err


def test_metrics_port_in_use(site):
    site.add_user("alice", PASSWORD)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, err, path = run_posternd_conf(site, CONF.format(port=free_port(), metrics=f"127.0.0.1:{port}"))
    assert rc != 0
    assert f"{path}:10: [metrics] listen" in err, err
    assert f"cannot listen on 127.0.0.1:{port}" in err, err


def listening_ports(pid):
    """The TCP ports process pid listens on (from /proc: its socket
    inodes, matched against the kernel's tables of listening sockets)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def test_off_by_default(site, start_server):
    """Without [metrics] no HTTP socket is opened; with it, one more port."""
    site.add_user("alice", PASSWORD)
    srv = start_server()
    assert listening_ports(srv.pid) == {srv.port}
    srv.stop()
    srv.stopped_by_test = True
    mport = free_port()
    srv2 = start_server(**{"metrics.listen": f"127.0.0.1:{mport}"})
    assert listening_ports(srv2.pid) == {srv2.port, mport}


def raw_request(port, data, timeout=5):
    """Sends data as is; returns (status line, headers text, body bytes) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    status, _, headers = head.decode().partition("\r\n")
    return status, headers, body


def test_malformed_requests_get_clear_errors(metered):
    port = metered.metrics_port
    for req, status in [
        (b"HELLO\r\n\r\n", "400"),
        (b"GET /metrics\r\n\r\n", "400"),                # HTTP/0.9
        (b"GET /metrics HTTP/2.0\r\n\r\n", "400"),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", "400"),
        (b"G\x00T /metrics HTTP/1.1\r\n\r\n", "400"),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", "431"),
        (b"GET /" + b"m" * 9000 + b" HTTP/1.1\r\n\r\n", "431"),
        (b"GET http://127.0.0.1/metrics HTTP/1.1\r\n\r\n", "200"),
        (b"GET https://localhost:9/metrics?a=b HTTP/1.0\n\n", "200"),
        (b"GET http://localhost HTTP/1.1\r\n\r\n", "404"),
        (b"\r\nGET HTTP://localhost/metrics HTTP/1.1\r\n\r\n", "200"),
    ]:
        line, headers, body = raw_request(port, req)
        assert line.split(" ")[:2] == ["HTTP/1.1", status], (req[:40], line)
        assert "Connection: close" in headers
        length = re.search(r"Content-Length: (\d+)", headers)
        assert length and int(length.group(1)) == len(body), (req[:40], headers)
    # A body the endpoint does not want is read and dropped: the whole
    # answer arrives, not a reset.
    line, headers, body = raw_request(
        port, b"POST /metrics HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000)
    assert line.startswith("HTTP/1.1 405 ") and "Allow: GET, HEAD" in headers
    assert body == b"Method not allowed: use GET\n"


def test_half_closed_client_gets_the_whole_answer(metered):
    """nc -N and the like close their side after the request; the answer,
    larger than one write, still arrives whole."""
    port = metered.metrics_port
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        assert length == len(body) and length > 16384, (length, len(body))
        parse_exposition(body.decode())


def test_connections_are_capped_and_end_in_time(metered):
    """Anyone who reaches the port can open connections: at most 16 are held,
    and one that has not sent its whole request within 3 s is closed even
    if it trickles, so the file descriptors that POP3 sessions need cannot
    be taken, and scrapes come back by themselves."""
    port = metered.metrics_port
    t_open = time.monotonic()
    held = []
    for i in range(16):
        s = socket.create_connection(("127.0.0.1", port), timeout=15)
        s.sendall(b"GET /metr")
        held.append(s)
    # The 17th is closed at once, without an answer.
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    t = time.monotonic()
    try:
        assert extra.recv(100) == b""
    except ConnectionResetError:
        pass
    assert time.monotonic() - t < 2
    extra.close()
    # POP3 is not affected.
    with metered.client() as c:
        c.login("bob", "hunter2")
        c.quit()
    # A connection that trickles a byte every half second is still closed
    # at its deadline.
    t0 = time.monotonic()
    trickler = held[0]
    closed = False
    while time.monotonic() - t0 < 8:
        try:
            trickler.sendall(b"x")
        except OSError:
            closed = True
            break
        trickler.settimeout(0.5)
        try:
            if trickler.recv(100) == b"":
                closed = True
                break
        except socket.timeout:
            pass
    assert closed, "a trickling connection outlived its deadline"
    assert time.monotonic() - t_open < 5
    for s in held:
        s.close()
    # The slots are free again.
    wait_until(lambda: http(port)[0] == 200, 5, interval=0.2, what="a scrape after the cap")
