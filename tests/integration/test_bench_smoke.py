"""
Issue 4: a smoke test of the benchmark's instrument (bench/loadgen.c and
the two ceiling servers, bench/lineserver.c and bench/sendfile_server.c).

Every mode of the load generator runs briefly against the real posternd (the
ASan build, so that a crash under load shows here) and against the ceiling
servers. Only correctness is checked: no errors, and the counts and byte
totals the mailboxes imply. Nothing here is timed; timings are `make bench`.

The tools are built by `make bench-tools` (part of `make test`); without
them the tests are skipped.
"""

import importlib.util
import json
import os
import socket
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BUILD, HAVE_IPV6, OPENSSL, free_port, to_wire

TOOLS = BUILD / "bench"
LOADGEN = TOOLS / "loadgen"
LINESERVER = TOOLS / "lineserver"
SENDFILE_SERVER = TOOLS / "sendfile_server"
TLS_FLOOR = TOOLS / "tls_floor"

pytestmark = pytest.mark.skipif(not LOADGEN.exists(), reason=f"{LOADGEN} not built (make bench-tools)")

RESULT_KEYS = {"mode", "concurrency", "tls", "duration", "sessions", "errors", "rate", "p50_ms",
               "p99_ms", "messages", "bytes", "msgs_per_s", "mb_per_s", "resumed", "guesses",
               "guesses_per_s", "refused", "cpu_user_s", "cpu_sys_s", "cpu_pct", "times_ms"}


def run_loadgen(mode, port, *args, duration=1, warmup=0, timeout=90):
    """Runs loadgen; returns (result object, stdout lines before it, stderr)."""
    cmd = [str(LOADGEN), mode, "--port", str(port), "--duration", str(duration),
           "--warmup", str(warmup), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    out = p.stdout.decode().splitlines()
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, f"{cmd}: rc={p.returncode}\n{err}"
    assert out, f"{cmd}: no output\n{err}"
    result = json.loads(out[-1])
    assert set(result) == RESULT_KEYS, result
    assert result["mode"] == mode
    return result, out[:-1], err


def users_file(site, n, prefix="u"):
    """Adds n users to the site; returns loadgen's --users file."""
    path = site.root / f"loadgen-users-{prefix}"
    lines = []
    for i in range(n):
        site.add_user(f"{prefix}{i}", f"pw-{prefix}{i}")
        lines.append(f"{prefix}{i} pw-{prefix}{i}\n")
    path.write_text("".join(lines))
    return path


# ---------------------------------------------------------------------------
# Messages: every one is WIRE_SIZE octets on the wire once un-stuffed, so
# that the bytes loadgen counts must be exactly messages * WIRE_SIZE.
# ---------------------------------------------------------------------------

WIRE_SIZE = 300_000  # more than loadgen's read buffer: bodies span reads

HEADS = [
    # LF line ends, as Postfix writes them, and lines that need stuffing
    b"From: a@example.org\nSubject: dots\n\n.leading dot\n..two dots\n.\n. \n",
    # CRLF line ends
    b"Subject: crlf\r\n\r\n.\r\nbody\r\n",
    # mixed line ends and a bare CR (content, not a line end)
    b"Subject: mixed\n\nbare\rcr\r\n.\n.\r\n",
    # the first line already begins with a dot
    b".starts with a dot\n\nbody\n",
]


def padded(head: bytes, last_newline=True) -> bytes:
    """head, then many lines that need stuffing, then a last line of X
    (ended or not), sized so that to_wire() gives WIRE_SIZE octets."""
    room = WIRE_SIZE - len(to_wire(head)) - 2 - 100
    filler = b"..dot\n" * (room // 7)  # 7 octets each on the wire
    k = WIRE_SIZE - len(to_wire(head + filler)) - 2
    msg = head + filler + b"X" * k + (b"\n" if last_newline else b"")
    assert len(to_wire(msg)) == WIRE_SIZE
    return msg


MESSAGES = [padded(h, last_newline=(i != 2)) for i, h in enumerate(HEADS)]


# ---------------------------------------------------------------------------
# posternd
# ---------------------------------------------------------------------------

def test_login(site, start_server):
    users = users_file(site, 4)
    srv = start_server(max_connections_per_ip=100)
    r, _, err = run_loadgen("login", srv.port, "--users", users, "--concurrency", 4)
    assert r["errors"] == 0, err
    assert r["sessions"] > 0
    assert r["concurrency"] == 4 and r["tls"] is False
    assert r["messages"] == 0 and r["bytes"] == 0 and r["resumed"] == 0


def test_retr_checks_every_byte(site, start_server):
    users = users_file(site, 2)
    for i in range(2):
        for m in MESSAGES:
            site.deliver(f"u{i}", m)
    srv = start_server(max_connections_per_ip=100)
    r, _, err = run_loadgen("retr", srv.port, "--users", users, "--concurrency", 2)
    assert r["errors"] == 0, err
    assert r["messages"] > 0 and r["sessions"] > 0
    assert r["bytes"] == r["messages"] * WIRE_SIZE


def test_idle(site, start_server):
    users = users_file(site, 20)
    srv = start_server(max_connections_per_ip=100)
    r, before, err = run_loadgen("idle", srv.port, "--users", users, "--concurrency", 20,
                                 "--hold", 1)
    assert [json.loads(line) for line in before] == [{"ready": True, "sessions": 20}]
    assert r["errors"] == 0, err
    assert r["sessions"] == 20
    assert r["rate"] > 0  # NOOPs were answered


def test_bigbox(site, start_server):
    site.add_user("big", "bigpw")
    for i in range(300):
        site.deliver("big", b"Subject: %d\n\n.dot\nbody\n" % i)
    users = site.root / "big-users"
    users.write_text("big bigpw\n")
    srv = start_server()
    r, _, err = run_loadgen("bigbox", srv.port, "--users", users, "--count", 300)
    assert r["errors"] == 0, err
    assert r["sessions"] == 1 and r["messages"] == 300
    assert set(r["times_ms"]) == {"login_stat", "list", "uidl"}
    r, _, err = run_loadgen("bigbox", srv.port, "--users", users, "--count", 299)
    assert r["errors"] == 1 and "expected 299" in err


@pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
def test_login_tls_and_resumption(site, start_server):
    users = users_file(site, 2)
    tls = site.root / "tls"
    tls.mkdir()
    p = subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem",
                        "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost"],
                       cwd=tls, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    tls_port = free_port()
    listen = f"127.0.0.1:{tls_port}, [::1]:{tls_port}" if HAVE_IPV6 else f"127.0.0.1:{tls_port}"
    start_server(**{"tls.cert": "tls/cert.pem", "tls.key": "tls/key.pem",
                    "server.listen_tls": listen, "max_connections_per_ip": 100})
    r, _, err = run_loadgen("login", tls_port, "--tls", "--users", users, "--concurrency", 2)
    assert r["errors"] == 0, err
    assert r["sessions"] > 0 and r["tls"] is True and r["resumed"] == 0
    r, _, err = run_loadgen("login", tls_port, "--tls", "--resume", "--users", users,
                            "--concurrency", 2)
    assert r["errors"] == 0, err
    assert r["sessions"] > 0
    # Every slot's first handshake is a full one; the later ones resume.
    assert 0 < r["resumed"] <= r["sessions"]


@pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
def test_tls_floor_resumes_every_handshake(tmp_path):
    """The library floor really measures resumption: every counted TLS 1.3
    and TLS 1.2 handshake of the second series resumes, none of the first."""
    p = subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost"],
                       cwd=tmp_path, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([str(TLS_FLOOR), "cert.pem", "key.pem", "20"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    got = [json.loads(line) for line in p.stdout.splitlines()]
    assert [d["version"] for d in got] == ["TLSv1.3", "TLSv1.2"]
    for d in got:
        assert d["handshakes"] == 20 and d["resumed_count"] == 20 and d["full_reused"] == 0, d
        assert all(d[k] > 0 for k in ("full_server_us", "full_client_us", "resumed_server_us",
                                       "resumed_client_us")), d
    # Bad arguments: a usage line, and a missing key is an error, not numbers.
    p = subprocess.run([str(TLS_FLOOR)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "usage" in p.stderr
    p = subprocess.run([str(TLS_FLOOR), "cert.pem", "missing.pem"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and p.stdout == "" and "cannot load" in p.stderr


def test_guess_counts_guesses_and_refusals(site, start_server):
    # No delay, and a ban after 3 failures per address: within a second
    # both addresses are banned, and from then on every connection gets the
    # -ERR greeting.
    site.add_user("victim", "the-right-one")
    srv = start_server(**{"guard.ban_after": 3, "guard.max_auth_failures": 3})
    r, _, err = run_loadgen("guess", srv.port, "--concurrency", 4, "--sources", 2,
                            "--user", "victim", duration=3)
    assert r["errors"] == 0, err
    assert r["sessions"] > 0
    # Each address gets at least ban_after answers before its ban.
    assert r["guesses"] >= 6
    assert r["refused"] > 0
    assert abs(r["guesses_per_s"] - r["guesses"] / 3) < 0.01
    assert r["rate"] == pytest.approx(r["guesses_per_s"], abs=0.1)
    # The slots connected from 127.0.0.2 and 127.0.0.3 (i % 2), not
    # 127.0.0.1: each address was banned on its own.
    bans = srv.wait_audit(lambda ev: ev.get("event") == "ban" and ev.get("ip") == "127.0.0.3",
                          what="a ban of 127.0.0.3")
    assert bans["net"] == "127.0.0.3/32"
    nets = {ev.get("ip") for ev in srv.audit_events() if ev.get("event") == "auth_fail"}
    assert nets == {"127.0.0.2", "127.0.0.3"}
    fails = [ev for ev in srv.audit_events() if ev.get("event") == "auth_fail"]
    assert all(ev.get("user") == "victim" for ev in fails)
    # A (user, password) pair sent again does not count towards a ban, so
    # the bans show that the passwords were new ones.
    assert srv.audit_text().count("event=ban ") == 2


def test_guess_reconnects_when_the_failure_limit_ends_a_session(site, start_server):
    # No delay and no ban: every second PASS ends the session, and the
    # server says so; that line answers the guesser's next USER.
    site.add_user("victim", "the-right-one")
    srv = start_server(**{"guard.failure_delay": 0, "guard.max_auth_failures": 2,
                          "guard.ban_after": 0, "guard.account_failures": 0})
    r, _, err = run_loadgen("guess", srv.port, "--concurrency", 2, "--user", "victim",
                            duration=2)
    assert r["errors"] == 0, err
    assert r["refused"] == 0
    # Two guesses per connection, so many connections.
    assert r["sessions"] >= 4 and r["guesses"] >= 2 * (r["sessions"] - 2)
    assert any(ev.get("event") == "disconnect" and ev.get("reason") == "too many failed logins"
               for ev in srv.audit_events())


def test_guess_waits_for_delayed_answers(site, start_server):
    # Answers delayed by the guard are answers, not timeouts: with the
    # timeout above failure_delay_max, no errors.
    site.add_user("victim", "the-right-one")
    srv = start_server(**{"guard.failure_delay": 1, "guard.failure_delay_max": 2,
                          "guard.max_auth_failures": 3})
    r, _, err = run_loadgen("guess", srv.port, "--concurrency", 2, "--user", "victim",
                            "--timeout", 3, duration=4)
    assert r["errors"] == 0, err
    assert r["guesses"] > 0 and r["refused"] == 0
    # The answers took at least the first delay.
    assert r["p50_ms"] >= 900


def test_guess_arguments():
    for args in (["guess", "--port", "1"],  # no --user
                 ["login", "--port", "1", "--user", "x"],  # --user is for guess
                 ["guess", "--port", "1", "--user", "x", "--sources", "201"]):
        p = subprocess.run([str(LOADGEN), *args], capture_output=True, timeout=30)
        assert p.returncode == 2 and b"loadgen:" in p.stderr, (args, p.stderr)


# ---------------------------------------------------------------------------
# The ceilings
# ---------------------------------------------------------------------------

@pytest.fixture
def tool():
    """Factory: tool(path, *args) starts a ceiling server on a free port and
    returns (port, its "ready" line); stopped at teardown."""
    procs = []

    def start(path, *args):
        if not path.exists():
            pytest.skip(f"{path} not built (make bench-tools)")
        p = subprocess.Popen([str(path), "--port", "0", *map(str, args)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(p)
        line = p.stdout.readline().decode()
        assert line.startswith("ready port="), f"{path}: {line!r} {p.stderr.read(2000)!r}"
        fields = dict(kv.split("=") for kv in line.split()[1:])
        return int(fields["port"]), fields

    yield start
    for p in procs:
        assert p.poll() is None, f"{p.args[0]} died with status {p.returncode}"
        p.terminate()
        p.wait(10)


@pytest.mark.parametrize("threads", [1, 2])
def test_lineserver(tool, threads):
    port, _ = tool(LINESERVER, "--threads", threads)
    r, _, err = run_loadgen("login", port, "--concurrency", 8)
    assert r["errors"] == 0, err
    assert r["sessions"] > 0


def test_lineserver_answers_every_line():
    # The protocol, checked once without loadgen: greeting, one answer per
    # line (also for lines split across writes), QUIT in any case closes.
    if not LINESERVER.exists():
        pytest.skip(f"{LINESERVER} not built")
    p = subprocess.Popen([str(LINESERVER), "--port", "0"], stdout=subprocess.PIPE)
    try:
        port = int(p.stdout.readline().split(b"=")[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"USER a\r\nPA")
            time.sleep(0.05)
            s.sendall(b"SS b\r\nqUiT\r\n")
            got = b""
            while chunk := s.recv(4096):
                got += chunk
        assert got == b"+OK\r\n" * 4
    finally:
        p.terminate()
        p.wait(10)


def test_sendfile_server(tool, tmp_path):
    files = []
    for i, size in enumerate([0, 1, 70_000, 1_000_003]):
        f = tmp_path / f"f{i}"
        f.write_bytes(os.urandom(size))
        files.append(f)
    port, fields = tool(SENDFILE_SERVER, *files)
    total = int(fields["bytes"])
    assert total == 1_070_004
    r, _, err = run_loadgen("raw", port, "--concurrency", 4, "--count", total)
    assert r["errors"] == 0, err
    assert r["sessions"] > 0 and r["bytes"] > 0
    # A connection that delivers other than --count bytes is an error.
    r, _, _ = run_loadgen("raw", port, "--concurrency", 1, "--count", total + 1)
    assert r["errors"] > 0 and r["sessions"] == 0


# ---------------------------------------------------------------------------
# The generator's own checks, against servers that misbehave on purpose
# ---------------------------------------------------------------------------

class FakePop3(socketserver.ThreadingTCPServer):
    """A POP3 server with one message, whose LIST size can lie and whose
    RETR answer can trickle out a byte at a time (so that every state of
    loadgen's un-stuffer meets a read boundary)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, message, list_delta=0, trickle=False, stuff=True, pieces=1, refuse=False):
        self.wire = to_wire(message)
        self.list_delta = list_delta
        self.trickle = trickle
        self.stuff = stuff
        self.pieces = pieces  # the answer in this many sends, 20 ms apart
        self.refuse = refuse  # RETR answered -ERR
        super().__init__(("127.0.0.1", 0), FakeHandler)


class FakeHandler(socketserver.StreamRequestHandler):
    def handle(self):
        srv = self.server
        s = self.request
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"+OK fake\r\n")
        for raw in self.rfile:
            cmd = raw.strip().upper()
            if cmd == b"LIST":
                s.sendall(b"+OK\r\n1 %d\r\n.\r\n" % (len(srv.wire) + srv.list_delta))
            elif cmd == b"RETR 1":
                stuffed = srv.wire
                if srv.stuff:
                    stuffed = (b"\r\n" + srv.wire).replace(b"\r\n.", b"\r\n..")[2:]
                answer = b"+OK\r\n" + stuffed + b".\r\n"
                if srv.refuse:
                    answer = b"-ERR no such message\r\n"
                # trickle: a byte at a time; pieces: that many sends.
                step, pause = (1, 0.0005) if srv.trickle else (-(-len(answer) // srv.pieces), 0.02)
                for i in range(0, len(answer), step):
                    s.sendall(answer[i:i + step])
                    if i + step < len(answer):
                        time.sleep(pause)
            elif cmd == b"QUIT":
                s.sendall(b"+OK\r\n")
                return
            else:
                s.sendall(b"+OK\r\n")


@pytest.fixture
def fake_pop3():
    servers = []

    def start(*args, **kw):
        srv = FakePop3(*args, **kw)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


TRICKY = b".\n..\n.x\n.\r\nend.\r\n.\r\r\nlast"


def retr_counts_every_octet(port, message):
    """One retr run against the fake server: no error, and every message
    counted whole, as the original (CRLF) octets."""
    r, _, err = run_loadgen("retr", port, "--concurrency", 1)
    assert r["errors"] == 0, err
    assert r["messages"] > 0
    assert r["bytes"] == r["messages"] * len(to_wire(message))


def test_unstuffer_across_read_boundaries(fake_pop3):
    retr_counts_every_octet(fake_pop3(TRICKY, trickle=True), TRICKY)


# Lines of every length from 0 to 40, every third one beginning with a
# dot: the line starts fall at every offset of loadgen's 16-byte scan, and
# the answer arrives in large reads, unlike the trickle above.
LONG = b"".join((b"." if i % 3 == 0 else b"") + b"x" * (i % 41) + b"\n" for i in range(2000))


def test_unstuffer_finds_dot_lines_at_every_offset(fake_pop3):
    retr_counts_every_octet(fake_pop3(LONG), LONG)


# A large answer that arrives in pauses, or a short -ERR where a megabyte
# was due: loadgen must not wait for bytes that never come.
def test_a_large_message_in_pieces(fake_pop3):
    retr_counts_every_octet(fake_pop3(LONG * 20, pieces=7), LONG * 20)


def test_retr_refused_is_reported_at_once(fake_pop3):
    port = fake_pop3(LONG * 20, refuse=True)
    r, _, err = run_loadgen("retr", port, "--concurrency", 1, "--timeout", 30)
    assert r["errors"] > 0 and "RETR: -ERR no such message" in err
    assert r["messages"] == 0


def test_a_dot_line_left_unstuffed_is_an_error(fake_pop3):
    # One dot line, deep inside a long message, that the server forgot to
    # stuff: loadgen must see it however the bytes around it are scanned.
    message = b"y" * 70 + b"\n"
    message = message * 1000 + b".lost\n" + message * 1000
    port = fake_pop3(message, stuff=False)
    r, _, err = run_loadgen("retr", port, "--concurrency", 1)
    assert r["errors"] > 0 and "unstuffed dot line" in err
    assert r["messages"] == 0


@pytest.mark.parametrize("delta", [-1, 1])
def test_retr_size_mismatch_is_an_error(fake_pop3, delta):
    port = fake_pop3(TRICKY, list_delta=delta)
    r, _, err = run_loadgen("retr", port, "--concurrency", 1)
    assert r["errors"] > 0 and "LIST said" in err
    assert r["messages"] == 0 and r["bytes"] == 0


def test_silent_server_times_out():
    # Connections are accepted by the kernel but never answered: every
    # session must end at its deadline, and the run at its own.
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(64)
        port = lsock.getsockname()[1]
        start = time.monotonic()
        r, _, err = run_loadgen("login", port, "--concurrency", 2, "--timeout", 0.3, timeout=60)
        assert time.monotonic() - start < 40
    assert r["errors"] > 0 and r["sessions"] == 0 and "timeout" in err


def test_refused_connections_are_errors():
    port = free_port()
    r, _, err = run_loadgen("login", port, "--concurrency", 2)
    assert r["errors"] > 0 and r["sessions"] == 0


# ---------------------------------------------------------------------------
# The runner's ECDSA rows (bench/run.py; nothing is started or timed here)
# ---------------------------------------------------------------------------

RUN_PY = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def load_run_py():
    """bench/run.py as a module, for its pure functions."""
    spec = importlib.util.spec_from_file_location("bench_run", RUN_PY)
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    return run


def test_run_py_ecdsa_rows_and_verdicts():
    p = subprocess.run(["/usr/bin/python3", str(RUN_PY), "--list"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rows = {ln.split()[0]: ln for ln in p.stdout.splitlines() if ln.strip()}
    for kind in ("full", "resume"):
        line = rows[f"tls-ecdsa-{kind}-c16"]
        assert line.split(None, 1)[1].split(", ") == ["postern-ecdsa", "dovecot-tuned-ecdsa"]
    # The RSA rows keep their servers.
    assert rows["tls-full-c16"].endswith("postern, dovecot-tuned, dovecot-default")

    run = load_run_py()

    def cell(rate):
        return {"rate": rate, "errors": 0}
    summaries = {
        "tls-ecdsa-full-c16": {run.PE: cell(2052.0), run.TE: cell(1028.0)},
        "tls-ecdsa-resume-c16": {run.PE: cell(6200.0), run.TE: cell(1100.0)},
    }
    verdicts = {label: (v, detail) for label, v, detail in run.targets(summaries)}
    ecdsa = {k: v for k, v in verdicts.items() if k.startswith("ECDSA P-256")}
    assert len(ecdsa) == 2
    full = next(v for k, v in ecdsa.items() if "full handshakes" in k)
    resume = next(v for k, v in ecdsa.items() if "resumption" in k)
    # 1.996 must not print as 2.00 beside a FAIL.
    assert full == ("FAIL", "tls-ecdsa-full-c16: Postern 2052 vs Dovecot tuned 1028 = 1.996x "
                            "(need 2x)")
    assert resume == ("PASS", "Postern resumed 6200/s vs full 2052/s = 3.02x (need 3x)")
    # The ECDSA instances never stand in for the RSA verdicts.
    assert verdicts["TLS 1.3 full handshakes c16 >= 2x Dovecot tuned"][0] == "N/A"
    # The library floor, when measured, is quoted beside the resumption
    # verdicts, each with the floor of its own certificate.
    floor = {"TLSv1.3": {"full_server_us": 400.0, "full_client_us": 300.0,
                         "resumed_server_us": 130.0, "resumed_client_us": 120.0},
             "TLSv1.3 ECDSA": {"full_server_us": 200.0, "full_client_us": 350.0,
                               "resumed_server_us": 130.0, "resumed_client_us": 120.0}}
    summaries.update({
        "tls-full-c16": {run.P: cell(2000.0), run.T: cell(990.0)},
        "tls-resume-c16": {run.P: cell(3500.0)},
        "login-plain-c16": {run.P: {"rate": 10000.0, "cpu": 50.0, "server_cpu": 50.0,
                                     "errors": 0}},
    })
    verdicts = {label: (v, detail) for label, v, detail in run.targets(summaries, floor)}
    assert verdicts["TLS 1.3 with resumption c16 >= 3x our own full-handshake rate"] == (
        "FAIL", "Postern resumed 3500/s vs full 2000/s = 1.75x (need 3x); OpenSSL alone allows "
        "2.80x, 2.29x with Postern's plain POP3 session on top")
    ecdsa_resume = next(d for k, (_, d) in verdicts.items()
                        if k.startswith("ECDSA P-256") and "resumption" in k)
    assert ecdsa_resume == ("Postern resumed 6200/s vs full 2052/s = 3.02x (need 3x); OpenSSL "
                            "alone allows 2.20x, 1.86x with Postern's plain POP3 session on top")
    lines = run.floor_lines(floor, 100.0)
    assert [ln.split(" | ")[0] for ln in lines if ln.startswith("| TLS")] == [
        "| TLSv1.3", "| TLSv1.3 ECDSA"]


def test_run_py_partial_runs_keep_the_full_runs_data():
    """A run with --only or --quick writes its raw data beside, not over,
    the full run's bench/work/results.json, which bench/RESULTS.md quotes."""
    run = load_run_py()
    full = Path(run.raw_results_path(False))
    partial = Path(run.raw_results_path("^tls"))
    assert full.name == "results.json" and partial.name == "results-partial.json"
    assert full.parent == partial.parent == Path(run.WORK)
