"""
[limits]: connections per address and in total, login and idle timeouts,
line length; and what happens to a client that never sends a newline.
"""

import threading
import time

from conftest import (
    CRLF,
    HAVE_IPV6,
    RELEASE_BIN,
    Client,
    RssSampler,
    wait_until,
)


def refused(srv, host="127.0.0.1"):
    """Connects and expects the [SYS/TEMP] refusal followed by a close."""
    c = Client(srv.port, host=host, greeting=False)
    line = c.readline()
    assert line.startswith(b"-ERR [SYS/TEMP]"), line
    assert c.wait_closed() == b""
    c.close()


def accepted(srv, host="127.0.0.1"):
    c = Client(srv.port, host=host)
    assert c.greeting.startswith("+OK"), c.greeting
    return c


def test_max_connections_per_ip(site, start_server):
    site.add_user("alice", "secret")
    srv = start_server(max_connections_per_ip=3)
    held = [accepted(srv) for _ in range(3)]
    refused(srv)
    refused(srv)
    if HAVE_IPV6:
        other = accepted(srv, host="::1")  # another address has its own count
        other.ok("USER alice")
        other.quit()
    # The held connections are unaffected.
    held[0].login("alice", "secret")
    held[0].quit()

    # Once one has gone, a new connection is accepted again.
    def fourth():
        try:
            c = Client(srv.port)
        except OSError:
            return None
        if c.greeting.startswith("+OK"):
            return c
        c.close()
        return None

    c = wait_until(fourth, 10, interval=0.05, what="a free slot")
    refused(srv)
    c.close()
    for h in held[1:]:
        h.close()


def test_max_connections_total(site, start_server):
    srv = start_server(max_connections=3, max_connections_per_ip=20)
    held = [accepted(srv), accepted(srv)]
    if HAVE_IPV6:
        held.append(accepted(srv, host="::1"))
        refused(srv, host="::1")
    else:
        held.append(accepted(srv))
    refused(srv)
    held[0].quit()
    wait_until(lambda: _try_accept(srv), 10, interval=0.05, what="a free slot")
    for h in held[1:]:
        h.close()


def _try_accept(srv):
    c = Client(srv.port)
    ok = c.greeting.startswith("+OK")
    c.close()
    return ok


def test_login_and_idle_timeouts(site, start_server):
    site.add_user("alice", "secret")
    srv = start_server(login_timeout=1, idle_timeout=2)
    results = {}

    def never_logs_in():
        c = srv.client()
        t0 = time.monotonic()
        c.ok("USER alice")  # activity does not extend the login time
        line = c.readline(timeout=10)
        results["login"] = (line, c.wait_closed(), time.monotonic() - t0)

    def idles_after_login():
        c = srv.client()
        c.login("alice", "secret")
        # Logged in: the login timeout no longer applies; activity keeps
        # the session alive past both limits.
        for _ in range(5):
            time.sleep(0.6)
            c.ok("NOOP")
        t0 = time.monotonic()
        line = c.readline(timeout=10)
        results["idle"] = (line, c.wait_closed(), time.monotonic() - t0)

    def guarded(f):
        try:
            f()
        except Exception as e:  # noqa: BLE001 - reported below
            results[f.__name__ + "_error"] = repr(e)

    threads = [threading.Thread(target=guarded, args=(f,))
               for f in (never_logs_in, idles_after_login)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not [k for k in results if k.endswith("_error")], results
    line, rest, elapsed = results["login"]
    assert line.startswith(b"-ERR"), line
    assert rest == b""
    assert 0.8 <= elapsed < 5, elapsed
    line, rest, elapsed = results["idle"]
    assert line.startswith(b"-ERR"), line
    assert rest == b""
    assert 1.7 <= elapsed < 6, elapsed


def test_max_line_boundaries(site, start_server):
    site.add_user("alice", "secret")
    srv = start_server(max_line=256)
    c = srv.client()
    # max_line counts the line end: 254 octets + CRLF = 256 is accepted.
    c.ok("USER " + "a" * 249)
    c.send(b"NOOP" + b" " * 250 + b"\n")  # 255 octets with LF: fits
    assert c.readline().startswith(b"-ERR")  # NOOP before login: wrong state, not too long
    c.send(b"USER " + b"b" * 250 + CRLF)  # 257 octets: too long
    line = c.readline()
    assert line.startswith(b"-ERR"), line
    assert c.wait_closed() == b""
    c = srv.client()
    c.send(b"USER " + b"b" * 251 + b"\n")  # 257 octets with LF
    assert c.readline().startswith(b"-ERR")
    assert c.wait_closed() == b""
    c = srv.client()
    c.login("alice", "secret")
    c.quit()


def test_overlong_line_answer_ends_with_fin_not_reset(site, start_server):
    """Closing a socket with the client's bytes unread sends a reset, which
    on a real network can overtake the -ERR still in flight. The server
    sends FIN after the answer and discards what else comes."""
    site.add_user("alice", "secret")
    srv = start_server(max_line=256)
    for _ in range(3):
        c = srv.client()
        c.send(b"USER " + b"a" * 20000 + CRLF)
        assert c.readline() == b"-ERR Line too long"
        c.sock.settimeout(5)
        # A reset raises ConnectionResetError here.
        assert c.sock.recv(65536) == b""
        c.sock.close()
    c = srv.client()
    c.login("alice", "secret")
    c.quit()


def _flood(sock, total, errors):
    chunk = b"A" * 65536
    sent = 0
    try:
        while sent < total:
            sent += sock.send(chunk[: min(len(chunk), total - sent)])
    except OSError:
        pass  # the server closed on us: expected
    except Exception as e:  # noqa: BLE001
        errors.append(e)


def no_newline_client(srv, total=1 << 20):
    """Sends total bytes without a newline; returns (first line, elapsed)."""
    c = srv.client()
    errors = []
    t = threading.Thread(target=_flood, args=(c.sock, total, errors), daemon=True)
    t0 = time.monotonic()
    t.start()
    try:
        line = c.readline(timeout=15)
    except ConnectionResetError:
        line = b"<reset>"
    try:
        rest = c.wait_closed(timeout=15)
    except ConnectionResetError:
        rest = b""
    t.join(15)
    c.close()
    assert not errors, errors
    return line, rest, time.monotonic() - t0


def test_megabyte_without_newline(server):
    line, rest, elapsed = no_newline_client(server)
    assert line.startswith(b"-ERR"), line
    assert rest == b""
    assert elapsed < 10
    c = server.client()
    c.login("alice", "secret")
    c.quit()


def test_unterminated_lines_do_not_grow_memory(site, start_server):
    """Ten clients send 1 MiB each without a newline, at once, to the
    release build: every one is refused and the server's RSS stays small."""
    site.add_user("alice", "secret")
    srv = start_server(binary=RELEASE_BIN)
    base = srv.rss_kib()
    sampler = RssSampler(srv.pid)
    sampler.start()
    results = []
    threads = [threading.Thread(target=lambda: results.append(no_newline_client(srv)))
               for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    peak = sampler.stop()
    assert len(results) == 10
    for line, rest, _ in results:
        assert line.startswith(b"-ERR") or line == b"<reset>", line
    assert sum(1 for r in results if r[0].startswith(b"-ERR")) >= 8
    assert peak < 32 * 1024, f"RSS peaked at {peak} KiB (started at {base} KiB)"
    assert peak - base < 8 * 1024, f"RSS grew by {peak - base} KiB"
    c = srv.client()
    c.login("alice", "secret")
    c.quit()
