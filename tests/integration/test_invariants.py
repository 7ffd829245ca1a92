"""
DESIGN.md section 6, invariants 1-8, each checked with a raw socket client,
Python's poplib and curl where the client can express it.
"""

import os
import poplib
import random
import re
import socket
import threading
import time

import pytest

from conftest import (
    CURL,
    CRLF,
    DIGEST_RE,
    UIDL_RE,
    curl,
    login_when_free,
    needs_curl,
    to_wire,
)

# poplib refuses lines longer than 2048 octets; binary test messages have longer ones.
poplib._MAXLINE = 1 << 24


def pop(srv, user="alice", password="secret", host="127.0.0.1"):
    p = poplib.POP3(host, srv.port, timeout=10)
    p.user(user)
    p.pass_(password)
    return p


def poplib_body(lines):
    return b"".join(line + CRLF for line in lines)


def fill(site, user, count, size=200):
    """count small distinct messages; returns their paths in order."""
    paths = []
    for i in range(count):
        body = b"".join(b"line %d of message %d\n" % (j, i) for j in range(size // 24 + 1))
        paths.append(site.deliver(user, b"Subject: message %d\n\n" % i + body))
    return paths


# Messages whose wire form is easy to get wrong.
TRICKY = {
    "lf": b"From: a@example.org\nSubject: lf\n\nline one\nline two\n",
    "crlf": b"From: a@example.org\r\nSubject: crlf\r\n\r\nbody line\r\n",
    "dots": b"Subject: dots\n\n.starts with a dot\n..two dots\n...three\nmid.dle\n",
    "dot_line": b"Subject: dot line\n\n.\nafter the dot line\n",
    "only_dot": b".\n",
    "dot_no_newline": b"Subject: x\n\n.",
    "no_final_newline": b"Subject: nf\n\nlast line without newline",
    "binary": bytes(range(256)) + b"\n" + bytes(range(255, -1, -1)) + b"\n\x00\x00\n\xff",
    "bare_cr": b"Subject: cr\r\n\r\na\rb\r\nend\r",
    "mixed_endings": b"a\r\nb\nc\r\n.\r\n..\n\r\n\n",
    "empty": b"",
    "blank_lines": b"\n\n\n",
    "crlf_split": b"x" * 16383 + b"\r\n" + b"." * 5 + b"\r" + b"\n" * 3,
    "long_line": b"Subject: long\n\n" + b"." + b"y" * 100000 + b"\n",
}


@pytest.fixture
def tricky(site, start_server):
    site.add_user("alice", "secret")
    paths = {k: site.deliver("alice", v) for k, v in TRICKY.items()}
    srv = start_server()
    return srv, list(TRICKY), paths


# ---------------------------------------------------------------------------
# 1. Removed only by QUIT from TRANSACTION after DELE in that session
# ---------------------------------------------------------------------------

def test_inv1_dele_quit_removes_only_marked(site, server):
    paths = fill(site, "alice", 3)
    c = server.client()
    c.login("alice", "secret")
    c.ok("DELE 2")
    # Marked, but nothing is removed before QUIT.
    assert all(p.exists() for p in paths)
    assert c.stat()[0] == 2
    assert c.quit().startswith("+OK")
    assert paths[0].exists() and not paths[1].exists() and paths[2].exists()
    c = server.client()
    c.login("alice", "secret")
    assert c.stat()[0] == 2
    c.quit()


def test_inv1_rset_unmarks(site, server):
    paths = fill(site, "alice", 2)
    c = server.client()
    c.login("alice", "secret")
    c.ok("DELE 1")
    c.ok("DELE 2")
    c.ok("RSET")
    assert c.stat()[0] == 2
    c.quit()
    assert all(p.exists() for p in paths)


def test_inv1_quit_in_authorization_removes_nothing(site, server):
    paths = fill(site, "alice", 2)
    c = server.client()
    c.ok("USER alice")
    c.err("DELE 1")
    assert c.quit().startswith("+OK")
    assert all(p.exists() for p in paths)


def test_inv1_poplib(site, server):
    paths = fill(site, "alice", 3)
    p = pop(server)
    p.dele(1)
    p.dele(3)
    p.quit()
    assert not paths[0].exists() and paths[1].exists() and not paths[2].exists()
    p = pop(server)
    p.dele(1)
    p.rset()
    p.quit()
    assert paths[1].exists()


@needs_curl
def test_inv1_curl_dele(site, server):
    paths = fill(site, "alice", 2)
    # libcurl: a custom request expects a body unless told otherwise (-I).
    curl("--user", "alice:secret", "-I", "-X", "DELE", server.url("1"))
    assert not paths[0].exists() and paths[1].exists()
    ev = server.wait_audit(lambda e: e["event"] == "quit")
    assert ev["deleted"] == "1"


# ---------------------------------------------------------------------------
# 2. A connection that ends any other way removes nothing
# ---------------------------------------------------------------------------

ENDINGS = ["close", "half_close", "rst", "idle_timeout", "line_too_long", "sigterm"]


@pytest.mark.parametrize("ending", ENDINGS)
def test_inv2_other_endings_remove_nothing(site, start_server, ending):
    site.add_user("alice", "secret")
    paths = fill(site, "alice", 3)
    srv = start_server(idle_timeout=1 if ending == "idle_timeout" else 600)
    c = srv.client()
    c.login("alice", "secret")
    for i in (1, 2, 3):
        c.ok(f"DELE {i}")
    if ending == "close":
        c.close()
    elif ending == "half_close":
        c.sock.shutdown(socket.SHUT_WR)
        c.wait_closed()
    elif ending == "rst":
        c.reset()
    elif ending == "idle_timeout":
        t0 = time.monotonic()
        line = c.readline(timeout=10)
        assert line.startswith(b"-ERR"), line
        c.wait_closed()
        assert time.monotonic() - t0 >= 0.8
    elif ending == "line_too_long":
        c.send(b"NOOP " + b"x" * 9000 + CRLF)
        assert c.readline().startswith(b"-ERR")
        c.wait_closed()
    elif ending == "sigterm":
        srv.stopped_by_test = True
        assert srv.stop() == 0
        c.wait_closed()
    if ending != "sigterm":
        srv.wait_audit(lambda e: e["event"] == "disconnect", what="disconnect")
        # The mailbox is free again and still holds everything.
        c2 = login_when_free(srv, "alice", "secret")
        assert c2.stat()[0] == 3
        c2.quit()
    assert all(p.exists() for p in paths)
    assert not any(e["event"] == "dele" for e in srv.audit_events())


def test_inv2_poplib_without_quit(site, server):
    paths = fill(site, "alice", 2)
    p = pop(server)
    p.dele(1)
    p.dele(2)
    p.close()  # no QUIT
    server.wait_audit(lambda e: e["event"] == "disconnect")
    assert all(p.exists() for p in paths)


@needs_curl
def test_inv2_curl_killed_after_dele(site, server):
    """curl sends "DELE 1" as a custom command on the mailbox URL and then
    waits for a multi-line body that never comes; --max-time ends it
    without QUIT."""
    paths = fill(site, "alice", 2)
    p = curl("--user", "alice:secret", "-X", "DELE 1", server.url(), timeout=2, check=False)
    assert p.returncode == 28, p  # operation timed out
    server.wait_audit(lambda e: e["event"] == "disconnect")
    assert all(x.exists() for x in paths)


# ---------------------------------------------------------------------------
# 3. A message delivered during a session is not seen and not touched
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["new", "cur"])
def test_inv3_delivery_during_session(site, server, where):
    old = fill(site, "alice", 2)
    c = server.client()
    c.login("alice", "secret")
    before = (c.stat(), c.listing("LIST"), c.listing("UIDL"))
    late = site.deliver("alice", b"Subject: late\n\nlate\n", sub=where,
                        flags="S" if where == "cur" else None)
    assert (c.stat(), c.listing("LIST"), c.listing("UIDL")) == before
    c.err("RETR 3")
    c.err("DELE 3")
    c.ok("DELE 1")
    c.ok("DELE 2")
    assert c.quit().startswith("+OK")
    assert not any(p.exists() for p in old)
    assert late.exists() and late.read_bytes() == b"Subject: late\n\nlate\n"
    c = server.client()
    c.login("alice", "secret")
    assert c.stat()[0] == 1
    assert c.retr(1) == b"Subject: late\r\n\r\nlate\r\n"
    c.quit()


def test_inv3_tmp_and_duplicates(site, server):
    """A message still in tmp/ is not mail yet; one base name present in both
    new/ and cur/ (a rename caught half-way by a copy) is one message."""
    md = site.maildir("alice")
    (md / "tmp" / "1700000500.M1P1.host").write_bytes(b"Subject: partial\n\nhalf")
    dup = site.deliver("alice", b"Subject: dup\n\nx\n")
    (md / "cur" / (dup.name + ":2,S")).write_bytes(dup.read_bytes())
    c = server.client()
    c.login("alice", "secret")
    uids = c.listing("UIDL")
    assert c.stat()[0] == 1 and list(uids.values()) == [dup.name]
    assert c.retr(1) == b"Subject: dup\r\n\r\nx\r\n"
    c.quit()
    assert (md / "tmp" / "1700000500.M1P1.host").exists()


def test_inv3_poplib(site, server):
    old = fill(site, "alice", 2)
    p = pop(server)
    count, _ = p.stat()
    late = site.deliver("alice", b"Subject: late\n\nx\n")
    assert p.stat()[0] == count
    assert len(p.list()[1]) == count
    for i in range(1, count + 1):
        p.dele(i)
    p.quit()
    assert late.exists() and not any(x.exists() for x in old)


# ---------------------------------------------------------------------------
# 4. One session per mailbox at a time
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("first_ends", ["quit", "close", "rst"])
def test_inv4_in_use(site, server, first_ends):
    fill(site, "alice", 1)
    a = server.client()
    a.login("alice", "secret")
    b = server.client()
    b.ok("USER alice")
    r = b.cmd("PASS secret")
    assert r.startswith("-ERR [IN-USE]"), r
    # The refused client stays in AUTHORIZATION and may log in elsewhere.
    b.login("bob", "hunter2")
    b.quit()
    # Another user's mailbox is unaffected.
    assert a.stat()[0] == 1
    if first_ends == "quit":
        a.quit()
        c = server.client()
        c.login("alice", "secret")  # at once: QUIT released the lock
    else:
        a.close() if first_ends == "close" else a.reset()
        c = login_when_free(server, "alice", "secret")
    c.quit()


def test_inv4_poplib(site, server):
    p = pop(server)
    with pytest.raises(poplib.error_proto) as e:
        pop(server)
    assert b"[IN-USE]" in e.value.args[0]
    p.quit()
    pop(server).quit()


@needs_curl
def test_inv4_curl(site, server):
    fill(site, "alice", 1)
    a = server.client()
    a.login("alice", "secret")
    r = curl("-v", "--user", "alice:secret", server.url(), check=False)
    assert r.returncode != 0
    assert b"-ERR [IN-USE]" in r.stderr
    a.quit()
    r = curl("--user", "alice:secret", server.url())
    assert r.stdout.startswith(b"1 ")


# ---------------------------------------------------------------------------
# 5. RETR returns the stored bytes exactly
# ---------------------------------------------------------------------------

def test_inv5_retr_exact_raw(tricky):
    srv, names, paths = tricky
    c = srv.client()
    c.login("alice", "secret")
    uidl = c.listing("UIDL")
    by_uid = {p.name.split(":")[0]: k for k, p in paths.items()}
    got = {}
    for n, uid in uidl.items():
        got[by_uid[uid]] = c.retr(n)
    c.quit()
    bad = [k for k in names if got[k] != to_wire(TRICKY[k])]
    assert not bad, f"RETR differs for {bad}"


def test_inv5_retr_exact_poplib(tricky):
    srv, names, paths = tricky
    p = pop(srv)
    by_uid = {p_.name.split(":")[0]: k for k, p_ in paths.items()}
    bad = []
    for entry in p.uidl()[1]:
        n, uid = entry.decode().split()
        _, lines, octets = p.retr(int(n))
        k = by_uid[uid]
        if poplib_body(lines) != to_wire(TRICKY[k]) or octets != len(to_wire(TRICKY[k])):
            bad.append(k)
    p.quit()
    assert not bad, f"RETR differs for {bad}"


@needs_curl
def test_inv5_retr_exact_curl(tricky):
    srv, names, paths = tricky
    lines = curl("--user", "alice:secret", "-X", "UIDL", srv.url()).stdout
    listing = curl("--user", "alice:secret", srv.url()).stdout.decode()
    sizes = {int(n): int(v) for n, v in (x.split() for x in listing.splitlines())}
    by_uid = {p.name.split(":")[0]: k for k, p in paths.items()}
    bad = []
    for entry in lines.split(CRLF)[:-1]:
        n, uid = entry.decode().split()
        out = curl("--user", "alice:secret", srv.url(n)).stdout
        want = to_wire(TRICKY[by_uid[uid]])
        # Invariant 6 as curl sees it: LIST size = octets of the message.
        assert sizes[int(n)] == len(want) == len(out) - (0 if want else 2), by_uid[uid]
        # curl counts the CRLF before the final "." as body, so for the
        # empty message ("+OK 0 octets" CRLF "." CRLF) it prints a CRLF;
        # the raw and poplib tests hold the server to the exact bytes.
        if out != (want or CRLF):
            bad.append(by_uid[uid])
    assert not bad, f"curl got different bytes for {bad}"


def test_inv5_top(site, server):
    msg = b"Subject: t\nX-Two: 2\n\n.one\ntwo\nthree\n"
    site.deliver("alice", msg)
    c = server.client()
    c.login("alice", "secret")
    assert c.multi("TOP 1 0")[1] == b"Subject: t\r\nX-Two: 2\r\n\r\n"
    assert c.multi("TOP 1 1")[1] == b"Subject: t\r\nX-Two: 2\r\n\r\n.one\r\n"
    assert c.multi("TOP 1 2")[1] == b"Subject: t\r\nX-Two: 2\r\n\r\n.one\r\ntwo\r\n"
    assert c.multi("TOP 1 99999999999")[1] == to_wire(msg)
    c.quit()


# ---------------------------------------------------------------------------
# 6. LIST/STAT sizes equal the octets RETR sends before dot-stuffing
# ---------------------------------------------------------------------------

def test_inv6_sizes_raw(tricky):
    srv, names, _ = tricky
    c = srv.client()
    c.ok("USER alice")
    r = c.ok("PASS secret")
    sizes = c.listing("LIST")
    count, total = c.stat()
    assert count == len(names) == len(sizes)
    assert total == sum(sizes.values())
    assert re.search(rf"\b{count}\b.*\b{total}\b", r), r  # the login answer agrees with STAT
    for n, size in sizes.items():
        assert c.ok(f"LIST {n}") == f"+OK {n} {size}"
        status = c.ok(f"RETR {n}")
        body = c.read_multiline()
        assert len(body) == size, (n, len(body), size)
        assert status == f"+OK {size} octets"
    c.ok("DELE 1")
    assert c.stat() == (count - 1, total - sizes[1])
    assert 1 not in c.listing("LIST")
    c.quit()


def test_inv6_sizes_poplib(tricky):
    srv, names, _ = tricky
    p = pop(srv)
    count, total = p.stat()
    listed = {}
    for entry in p.list()[1]:
        n, size = map(int, entry.split())
        listed[n] = size
    assert sum(listed.values()) == total and len(listed) == count
    for n, size in listed.items():
        _, lines, octets = p.retr(n)
        assert octets == size == len(poplib_body(lines))
    p.quit()


def test_inv6_sizes_from_index_and_names(site, start_server):
    """The size comes from the index on a second open, and a ,W= in the name
    (Dovecot's wire size) must agree with the bytes sent."""
    site.add_user("alice", "secret")
    body = b"Subject: w\n\n.dot\nx\n"
    wire = to_wire(body)
    site.deliver("alice", body, name=f"1700000100.M1P1.host,S={len(body)},W={len(wire)}")
    site.deliver("alice", body + b"more\n")
    srv = start_server()
    for _ in range(2):  # first open measures and writes the index, second reads it
        c = srv.client()
        c.login("alice", "secret")
        sizes = c.listing("LIST")
        for n, size in sizes.items():
            assert len(c.retr(n)) == size
        c.quit()


# ---------------------------------------------------------------------------
# 7. A UIDL never changes and is never reused
# ---------------------------------------------------------------------------

def uid_map(c):
    """{uid: message bytes} for the whole mailbox."""
    out = {}
    for n, uid in c.listing("UIDL").items():
        assert UIDL_RE.match(uid.encode()), uid
        assert uid not in out, f"duplicate UIDL {uid}"
        out[uid] = c.retr(n)
    return out


def session_uids(srv, user="alice", password="secret"):
    c = login_when_free(srv, user, password)
    m = uid_map(c)
    c.quit()
    return m


def uidl_by_client(srv):
    """{msg number: uid} as the raw client, poplib and curl see it."""
    c = login_when_free(srv, "alice", "secret")
    raw = c.listing("UIDL")
    c.quit()
    p = pop(srv)
    via_poplib = {int(n): u for n, u in (x.decode().split() for x in p.uidl()[1])}
    p.quit()
    out = {"raw": raw, "poplib": via_poplib}
    if CURL is not None:
        text = curl("--user", "alice:secret", "-X", "UIDL", srv.url()).stdout.decode()
        out["curl"] = {int(n): u for n, u in (x.split() for x in text.splitlines())}
    return out


def test_inv7_stable_across_sessions_rename_and_restart(site, start_server):
    site.add_user("alice", "secret")
    paths = fill(site, "alice", 4)
    srv = start_server()
    first = session_uids(srv)
    assert len(first) == 4
    assert session_uids(srv) == first
    seen = uidl_by_client(srv)
    assert all(v == seen["raw"] for v in seen.values()), seen
    assert set(seen["raw"].values()) == set(first)
    # Another program (an MUA) moves two messages to cur/ with flags.
    md = site.maildir("alice")
    os.rename(paths[0], md / "cur" / (paths[0].name + ":2,S"))
    os.rename(paths[1], md / "cur" / (paths[1].name + ":2,"))
    assert session_uids(srv) == first
    # ...and changes flags again.
    os.rename(md / "cur" / (paths[0].name + ":2,S"), md / "cur" / (paths[0].name + ":2,RS"))
    assert session_uids(srv) == first
    # The index is a cache: without it the UIDLs are the same.
    os.unlink(md / "postern-index")
    assert session_uids(srv) == first
    # A restarted server agrees, whichever client asks.
    srv.stopped_by_test = True
    assert srv.stop() == 0
    srv2 = start_server()
    assert session_uids(srv2) == first
    seen = uidl_by_client(srv2)
    assert all(set(v.values()) == set(first) for v in seen.values()), seen


def test_inv7_rename_during_session(site, server):
    paths = fill(site, "alice", 3)
    md = site.maildir("alice")
    c = server.client()
    c.login("alice", "secret")
    before = c.listing("UIDL")
    moved = md / "cur" / (paths[1].name + ":2,S")
    os.rename(paths[1], moved)
    assert c.listing("UIDL") == before
    assert c.retr(2) == to_wire(moved.read_bytes())
    # Flags change again while the session has it open.
    moved2 = md / "cur" / (paths[1].name + ":2,FS")
    os.rename(moved, moved2)
    assert c.retr(2) == to_wire(moved2.read_bytes())
    c.ok("DELE 2")
    c.quit()
    assert not moved2.exists() and paths[0].exists() and paths[2].exists()
    after = session_uids(server)
    assert set(after) == {before[1], before[3]}


def test_inv7_not_reused_after_deletion(site, server):
    site.deliver("alice", b"Subject: one\n\n1\n")
    c = server.client()
    c.login("alice", "secret")
    old_uid = c.listing("UIDL")[1]
    c.ok("DELE 1")
    c.quit()
    seen = {old_uid}
    for i in range(3):
        site.deliver("alice", b"Subject: again %d\n\n1\n" % i)
        c = server.client()
        c.login("alice", "secret")
        uid = c.listing("UIDL")[1]
        assert uid not in seen, f"UIDL {uid} reused"
        seen.add(uid)
        c.ok("DELE 1")
        c.quit()


def test_inv7_digest_uids_for_long_or_odd_names(site, start_server):
    site.add_user("alice", "secret")
    plain70 = "1700000001." + "a" * 59
    assert len(plain70) == 70
    names = {
        "plain70": plain70,
        "long71": "1700000002." + "b" * 60,
        "long200": "1700000003." + "c" * 189,
        "space": "1700000004.M1P1.host name",
        "utf8": "1700000005.M1P1.h\u00e9st",
        "latin1": b"1700000006.M1P1.h\xe9st",
        "control": "1700000007.M1P1.h\x01st",
    }
    paths = {k: site.deliver("alice", b"Subject: %s\n\nx\n" % k.encode(), name=v)
             for k, v in names.items()}
    srv = start_server()

    def uids():
        c = login_when_free(srv, "alice", "secret")
        out = {}
        for n, uid in c.listing("UIDL").items():
            subject = c.retr(n).split(CRLF)[0].decode()
            out[subject.split(": ")[1]] = uid
        c.quit()
        return out

    first = uids()
    assert first["plain70"] == plain70
    for k in names:
        if k != "plain70":
            assert DIGEST_RE.match(first[k]), (k, first[k])
    assert len(set(first.values())) == len(names)
    # Stable across sessions and across new -> cur renames with flags.
    md = os.fsencode(site.maildir("alice"))
    for p in paths.values():
        src = os.fsencode(p)
        os.rename(src, os.path.join(md, b"cur", os.path.basename(src) + b":2,S"))
    assert uids() == first
    os.unlink(site.maildir("alice") / "postern-index")
    assert uids() == first


# ---------------------------------------------------------------------------
# 8. No input crashes the server or affects another session
# ---------------------------------------------------------------------------

COMMANDS = ["USER", "PASS", "APOP", "CAPA", "STAT", "LIST", "UIDL", "RETR", "TOP",
            "DELE", "NOOP", "RSET", "AUTH", "STLS", "XTND", "LAST", "user", "rEtR"]
# No NUL and no name over 255 characters here: those end the session as
# protocol abuse (garbage_nul checks that).
ARGS = ["", " 1", " 0", " 1 0", " 1 2 3", " x", " -1", " 1x", " 4294967296",
        " 99999999999999999999999999", " 18446744073709551616", " " + "9" * 250,
        "  1", " 1 ", "\t1"]


def answer(c, line):
    """Sends one command and reads its whole answer; returns the status."""
    r = c.cmd(line)
    assert r.startswith("+OK") or r.startswith("-ERR"), (line, r)
    name = line.split(" ", 1)[0].upper()
    has_arg = len(line.split()) > 1
    if r.startswith("+OK") and (name in ("CAPA", "RETR", "TOP") or
                                (name in ("LIST", "UIDL", "AUTH") and not has_arg)):
        c.read_multiline()
    return r


def every_command(c, transaction):
    for cmd in COMMANDS:
        for arg in ARGS:
            line = cmd + arg
            r = answer(c, line)
            name = cmd.upper()
            if not transaction and name in ("STAT", "LIST", "UIDL", "RETR", "TOP", "DELE",
                                            "NOOP", "RSET"):
                assert r.startswith("-ERR"), (line, r)
            if transaction and name in ("USER", "PASS", "APOP"):
                assert r.startswith("-ERR"), (line, r)
            if name in ("STLS", "XTND", "LAST") or (name == "AUTH" and (transaction or arg)):
                # No argument here names a SASL mechanism; AUTH alone lists them.
                assert r.startswith("-ERR"), (line, r)
    for arg in ARGS:
        if arg:
            # QUIT with arguments is refused and ends nothing.
            assert answer(c, "QUIT" + arg).startswith("-ERR"), arg
    assert answer(c, "CAPA").startswith("+OK")


def drain(sock, into, stop):
    sock.settimeout(0.5)
    while not stop.is_set():
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return
        if not chunk:
            return
        into.append(chunk)


def garbage_random(srv, seed):
    rnd = random.Random(seed)
    with srv.client() as c:
        got, stop = [], threading.Event()
        t = threading.Thread(target=drain, args=(c.sock, got, stop), daemon=True)
        t.start()
        for _ in range(16):
            # NUL bytes would end the session at once (garbage_nul).
            c.send(rnd.randbytes(8192).replace(b"\x00", b"\x01"))
        c.send(b"\r\nQUIT\r\n")
        t.join(20)
        stop.set()
        data = b"".join(got)
        lines = data.split(CRLF)[:-1]
        assert data.endswith(CRLF) and lines[-1].startswith(b"+OK"), data[-200:]  # QUIT
        assert len(lines) > 200  # about one answer per random LF
        for line in lines:
            assert line.startswith(b"-ERR") or line.startswith(b"+OK"), line


def garbage_nul(srv):
    """A NUL byte is protocol abuse: -ERR, and the session ends, removing
    nothing."""
    for line in (b"\x00", b"\x00\x00\x00", b"US\x00ER alice", b"USER al\x00ice",
                 b"USER alice\x00", b"\x00USER alice"):
        with srv.client() as c:
            assert c.cmd(line) == "-ERR Protocol abuse, closing the connection", line
            c.wait_closed()
    for line in (b"RETR \x001", b"STAT\x00", b"DELE 1\x00"):
        with srv.client() as c:
            c.login("carol", "pw3")
            assert c.cmd(line) == "-ERR Protocol abuse, closing the connection", line
            c.wait_closed()
    with srv.client() as c:
        c.login("carol", "pw3")
        assert c.stat()[0] == 1  # the NUL DELE did nothing
        c.close()


def garbage_commands(srv):
    with srv.client() as c:
        every_command(c, transaction=False)
        c.login("bob", "hunter2")
        every_command(c, transaction=True)
        c.ok("RSET")
        c.ok("NOOP")
        c.close()  # no QUIT: bob's mailbox keeps everything


def garbage_hangups(srv):
    for i in range(10):
        c = srv.client(greeting=(i % 2 == 0))
        if i % 3 == 0:
            c.send(b"USER dave\r\nPASS pw4\r\n")  # login job outlives the client
        elif i % 3 == 1:
            c.send(b"USER dave\r\nPASS pw4\r\nRETR 1\r\n")
        else:
            c.send(b"US")
        c.reset()


def test_inv8_garbage_does_not_disturb_other_session(site, start_server):
    # One mailbox per concurrent client: they must not meet [IN-USE].
    for user, pw in (("alice", "secret"), ("bob", "hunter2"), ("carol", "pw3"), ("dave", "pw4")):
        site.add_user(user, pw)
        if user != "alice":
            site.deliver(user, b"Subject: %s\n\nhello\n" % user.encode())
    rnd = random.Random(8)
    big = b"".join(b"%s line %d\n" % (b"." if i % 7 == 0 else b"", i) for i in range(150000))
    big += rnd.randbytes(200000)
    site.deliver("alice", big)
    srv = start_server()

    victim = srv.client(rcvbuf=65536)
    victim.login("alice", "secret")
    size = victim.listing("LIST")[1]
    victim.send(b"RETR 1\r\n")
    # Read a little of the message, then leave it mid-RETR.
    victim.sock.settimeout(10)
    head = bytearray()
    while len(head) < 100000:
        head += victim.sock.recv(65536)

    errors = []

    def run(fn, *args):
        try:
            fn(srv, *args)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"{fn.__name__}: {e!r}")

    jobs = [threading.Thread(target=run, args=a) for a in
            [(garbage_random, 1), (garbage_random, 2), (garbage_nul,), (garbage_commands,),
             (garbage_hangups,)]]
    for t in jobs:
        t.start()
    for t in jobs:
        t.join(60)
    assert not any(t.is_alive() for t in jobs), "garbage clients hung"
    assert not errors, errors

    victim.buf = head + victim.buf
    status = victim.readline()
    assert status == b"+OK %d octets" % size
    body = victim.read_multiline(timeout=30)
    assert body == to_wire(big)
    victim.ok("NOOP")
    victim.quit()
    assert srv.alive()
    # The garbage sessions' mailboxes survived (none sent QUIT after a DELE).
    for user in ("bob", "carol", "dave"):
        assert len(site.message_files(user)) == 1, user


def test_inv8_hangup_during_failure_delay(site, start_server):
    """A client that resets while its failed login is held back."""
    site.add_user("alice", "secret")
    srv = start_server(failure_delay=1)
    for _ in range(5):
        c = srv.client()
        c.send(b"USER alice\r\nPASS wrong\r\n")
        time.sleep(0.05)
        c.reset()
    time.sleep(1.3)  # let the delay timers of the gone clients fire (or not)
    c = srv.client()
    c.login("alice", "secret")
    c.quit()
