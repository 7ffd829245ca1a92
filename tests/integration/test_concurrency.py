"""
Many sessions at once, IPv6, and shutdown with sessions open.
"""

import poplib
import signal
import threading
import time

from conftest import CRLF, CURL, curl, needs_ipv6, to_wire

poplib._MAXLINE = 1 << 24

N_CLIENTS = 20


def test_twenty_clients_twenty_mailboxes(site, start_server):
    messages = {}
    for i in range(N_CLIENTS):
        user = f"user{i:02d}"
        site.add_user(user, f"pw-{i}")
        msgs = []
        for j in range(3):
            body = b"Subject: %s %d\n\n" % (user.encode(), j)
            body += b"".join(b"%sline %d/%d of %s\n" % (b"." if k % 5 == 0 else b"", k, j,
                                                      user.encode()) for k in range(200 * (j + 1)))
            msgs.append((site.deliver(user, body), body))
        messages[user] = msgs
    srv = start_server(threads=2)
    barrier = threading.Barrier(N_CLIENTS, timeout=30)
    errors, done = [], []

    def client(i):
        user = f"user{i:02d}"
        try:
            barrier.wait()
            p = poplib.POP3("127.0.0.1", srv.port, timeout=30)
            p.user(user)
            p.pass_(f"pw-{i}")
            count, total = p.stat()
            sizes = [int(x.split()[1]) for x in p.list()[1]]
            assert count == 3 and sum(sizes) == total
            for n in range(1, 4):
                _, lines, octets = p.retr(n)
                got = b"".join(line + CRLF for line in lines)
                assert got == to_wire(messages[user][n - 1][1]), (user, n)
                assert octets == sizes[n - 1]
            p.dele(2)
            assert p.quit().startswith(b"+OK")
            done.append(user)
        except Exception as e:  # noqa: BLE001 - collected and reported
            errors.append(f"{user}: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(N_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(done) == N_CLIENTS
    for user, msgs in messages.items():
        assert msgs[0][0].exists() and not msgs[1][0].exists() and msgs[2][0].exists(), user


@needs_ipv6
def test_ipv6_login(site, start_server):
    site.add_user("alice", "secret")
    site.deliver("alice", b"Subject: six\n\nvia ::1\n")
    srv = start_server()
    p = poplib.POP3("::1", srv.port, timeout=10)
    p.user("alice")
    p.pass_("secret")
    assert p.retr(1)[1] == [b"Subject: six", b"", b"via ::1"]
    p.quit()
    srv.wait_audit(lambda e: e["event"] == "auth_ok" and e["ip"] == "::1")
    c = srv.client(host="::1")
    c.login("alice", "secret")
    c.quit()
    if CURL is not None:
        out = curl("--user", "alice:secret", srv.url("1", host="[::1]")).stdout
        assert out == b"Subject: six\r\n\r\nvia ::1\r\n"


def test_sigterm_with_open_sessions(site, start_server):
    site.add_user("alice", "secret")
    site.add_user("bob", "hunter2")
    site.add_user("carol", "pw3")
    paths = [site.deliver("alice", b"Subject: a\n\na\n"),
             site.deliver("bob", b"".join(b"bob line %d\n" % i for i in range(400000))),
             site.deliver("carol", b"Subject: c\n\nc\n")]
    srv = start_server(failure_delay=5)
    a = srv.client()
    a.login("alice", "secret")
    a.ok("DELE 1")
    b = srv.client(rcvbuf=4096)
    b.login("bob", "hunter2")
    b.ok("DELE 1")
    b.send(b"RETR 1\r\n")  # mid-RETR, not reading
    c = srv.client()
    c.ok("USER carol")
    c.send(b"PASS wrong\r\n")  # answer held back by failure_delay
    d = srv.client()  # before login, idle
    time.sleep(0.3)
    srv.stopped_by_test = True
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    srv.proc.wait(timeout=10)
    elapsed = time.monotonic() - t0
    assert elapsed < 5, f"shutdown took {elapsed:.1f}s"
    assert srv.stop() == 0
    for p in paths:
        assert p.exists(), p
    for cl in (a, c, d):
        cl.wait_closed(timeout=5)
    # b may have been reset with unread data; either way it is closed.
    try:
        b.wait_closed(timeout=5)
    except ConnectionResetError:
        pass
    assert not any(e["event"] == "dele" for e in srv.audit_events())
    reasons = [e.get("reason") for e in srv.audit_events() if e["event"] == "disconnect"]
    assert len(reasons) == 4, reasons


def test_idle_session_holds_one_descriptor(site, start_server):
    """An idle logged-in session keeps only its socket open (the lock lives
    in the registry, the Maildir is not held open): that is what lets one
    process hold 10,000 sessions under a 20,000-descriptor limit."""
    n = 40
    for i in range(n):
        site.add_user(f"fd{i:02d}", "pw")
        site.deliver(f"fd{i:02d}", b"Subject: x\n\nbody\n")
    srv = start_server(threads=2, max_connections_per_ip=100)

    def fds():
        import os
        return len(os.listdir(f"/proc/{srv.pid}/fd"))

    before = fds()
    clients = []
    for i in range(n):
        c = srv.client()
        c.login(f"fd{i:02d}", "pw")
        assert c.stat() == (1, len(to_wire(b"Subject: x\n\nbody\n")))
        clients.append(c)
    grown = fds() - before
    assert n <= grown <= n + 4, grown
    for c in clients:
        c.quit()


def test_second_server_sees_the_lock(site, start_server):
    """Two posternd processes on the same Maildirs and state_dir: a mailbox
    open in one is [IN-USE] in the other, and free again after QUIT."""
    site.add_user("shared", "pw")
    site.deliver("shared", b"Subject: x\n\nbody\n")
    a = start_server(tag="a")
    b = start_server(tag="b")
    ca = a.client()
    ca.login("shared", "pw")
    cb = b.client()
    cb.ok("USER shared")
    assert cb.cmd("PASS pw").startswith("-ERR [IN-USE]")
    cb.close()
    ca.quit()
    cb = b.client()
    cb.login("shared", "pw")
    cb.quit()
