"""
`postern report` (issue 6): the tables it prints from an audit log, checked
number by number on a synthetic log (every event the guard writes, IPv6,
syslog prefixes, lines of other programs, malformed lines, hostile values)
and on the log of a real server run.
"""

import datetime
import os
import re
import subprocess

import pytest

from conftest import BUILD, to_wire

POSTERN = BUILD / "asan" / "postern"
NOW = datetime.datetime.now(datetime.timezone.utc)


def ts(seconds_ago, ms=True):
    t = NOW - datetime.timedelta(seconds=seconds_ago)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{t.microsecond // 1000:03d}Z" if ms else "Z")


def report(*args, stdin=None, check=True):
    if not POSTERN.exists():
        pytest.skip(f"{POSTERN} not built (make asan)")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    p = subprocess.run([str(POSTERN), "report", *map(str, args)], input=stdin,
                       capture_output=True, text=True, timeout=60, env=env)
    assert "Sanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr
    if check:
        assert p.returncode == 0, p.stderr
    return p


def parse(text):
    """{title: [row dicts]} for every table, and {title: line} for the
    header lines. Titles are the lines that do not start with a space;
    a "(N of M)" after a title is kept in the 'cut' entry."""
    tables, heads, cut = {}, {}, {}
    current = None
    columns = None
    for line in text.split("\n"):
        if not line:
            continue
        if not line.startswith(" "):
            m = re.match(r"^(.*?)(?: \((\d+) of (\d+)\))?$", line)
            current = m.group(1)
            if m.group(2):
                cut[current] = (int(m.group(2)), int(m.group(3)))
            heads[current.split(":")[0]] = line
            tables[current] = []
            columns = None
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if cells == ["none"]:
            continue
        if columns is None:
            columns = cells
            continue
        assert len(cells) == len(columns), (columns, line)
        tables[current].append(dict(zip(columns, cells)))
    return tables, heads, cut


def by(rows, key):
    return {r[key]: r for r in rows}



SYNTHETIC = [
    # Failed logins: one IPv4 address trying three names...
    f'ts={ts(3600)} level=info event=auth_fail sid=a1 ip=203.0.113.7 port=4001 user="alice" '
    'mech=USER tls=no reason="bad password"',
    f'ts={ts(3500)} level=info event=auth_fail sid=a1 ip=203.0.113.7 port=4001 user="alice" '
    'mech=USER tls=no reason="bad password"',
    # (as journalctl -o short-iso writes it)
    f"2026-11-27T10:00:00+0000 mail posternd[4242]: ts={ts(3400)} level=info event=auth_fail "
    'sid=a2 ip=203.0.113.7 port=4002 user="bob" mech=PLAIN tls=yes reason="unknown user"',
    f'ts={ts(3300)} level=info event=auth_fail sid=a3 ip=203.0.113.7 port=4003 user="carol" '
    'mech=USER tls=yes reason="unknown user"',
    # ...an IPv6 client, twice on alice, once without a name (PASS in clear text)...
    f'ts={ts(3000)} level=info event=auth_fail sid=b1 ip=2001:db8:1:2::7 port=5001 '
    'user="alice" mech=USER tls=yes reason="bad password"',
    f'ts={ts(2900)} level=info event=auth_fail sid=b1 ip=2001:db8:1:2::7 port=5001 '
    'user="alice" mech=USER tls=yes reason="bad password"',
    f'ts={ts(2800)} level=warning event=auth_fail sid=b2 ip=2001:db8:1:2::7 port=5002 '
    'mech=PASS tls=no reason="cleartext"',
    # ...a syslog line, and a hostile name.
    f"Nov 27 10:00:00 mail posternd[4242]: ts={ts(2000)} level=info event=auth_fail sid=c1 "
    'ip=198.51.100.9 port=6001 user="dave" mech=USER tls=no reason="unknown user"',
    f'ts={ts(1900)} level=info event=auth_fail sid=c2 ip=198.51.100.9 port=6002 '
    f'user="ev\\x1b[2Jil" mech=USER tls=no reason="unknown user"',
    # The right password while the mailbox is in use: no guess.
    f'ts={ts(1950)} level=info event=auth_fail sid=c3 ip=192.0.2.10 port=6003 user="alice" '
    'mech=USER tls=yes reason="mailbox in use"',
    # Outside the default window (25 hours ago).
    f'ts={ts(25 * 3600)} level=info event=auth_fail sid=d1 ip=192.0.2.200 port=7001 '
    'user="alice" mech=USER tls=no reason="bad password"',
    # Logins, refusals.
    f'ts={ts(1800)} level=info event=auth_ok sid=e1 ip=192.0.2.10 port=8001 user="alice" '
    'mech=USER factor="password" tls=yes',
    f'ts={ts(1700)} level=info event=auth_ok sid=e2 ip=192.0.2.11 port=8002 user="bob" '
    'mech=PLAIN factor="password" tls=yes',
    f'ts={ts(1600)} level=warning event=refused sid=f1 ip=203.0.113.7 port=4100 reason="banned"',
    f'ts={ts(1590)} level=warning event=refused sid=f2 ip=203.0.113.7 port=4101 reason="banned"',
    # Bans: one in force; one lifted; one expired (and its unban); one set
    # three days ago that still runs (a ban is state, whatever --since says).
    f"ts={ts(3200)} level=warning event=ban ip=203.0.113.7 net=203.0.113.7/32 failures=10 "
    f"window=600 until={ts(-900, ms=False)}",
    f"ts={ts(2700)} level=warning event=ban ip=2001:db8:1:2::7 net=2001:db8:1:2::/64 "
    f"failures=10 window=600 until={ts(-600, ms=False)}",
    f"ts={ts(2600)} level=info event=unban net=2001:db8:1:2::/64 reason=admin",
    f"ts={ts(7200)} level=warning event=ban ip=198.51.100.0 net=198.51.100.0/32 failures=12 "
    f"window=600 until={ts(6300, ms=False)}",
    f"ts={ts(6300)} level=info event=unban net=198.51.100.0/32 reason=expired",
    f"ts={ts(3 * 86400)} level=warning event=ban ip=192.0.2.99 net=192.0.2.99/32 failures=50 "
    f"window=600 until={ts(-86400, ms=False)}",
    # Alerts.
    f'ts={ts(3200)} level=warning event=alert kind=brute_force subject="203.0.113.7/32" '
    "failures=10 window=600",
    f'ts={ts(3100)} level=warning event=alert kind=spray subject="203.0.113.7" accounts=3 '
    "window=600",
    f'ts={ts(1500)} level=warning event=alert kind=spray subject="198.51.100.9" accounts=2 '
    "window=600",
    f'ts={ts(1400)} level=warning event=alert kind=account_under_attack subject="alice" ips=3 '
    "window=600",
    f'ts={ts(1300)} level=info event=alert kind=new_location subject="alice" ip=192.0.2.10',
    f'ts={ts(1200)} level=warning event=alert kind=download_volume subject="bob" messages=500 '
    "bytes=73400320 window=3600",
    f'ts={ts(1100)} level=warning event=alert kind=mass_delete subject="bob" deleted=400 '
    "total=500 sid=g1",
    f'ts={ts(1000)} level=warning event=alert kind=attack_signature subject="192.0.2.66" '
    'sid=h1 what="format string"',
    f'ts={ts(26 * 3600)} level=warning event=alert kind=cleartext subject="192.0.2.1" '
    'user="zed" mech=USER',
    # Downloads and deletions.
    f'ts={ts(900)} level=info event=retr sid=e1 ip=192.0.2.10 port=8001 user="alice" msg=1 '
    'uidl="u1" size=100',
    f'ts={ts(890)} level=info event=retr sid=e1 ip=192.0.2.10 port=8001 user="alice" msg=2 '
    'uidl="u2" size=200',
    f'ts={ts(880)} level=info event=retr sid=e1 ip=192.0.2.10 port=8001 user="alice" msg=3 '
    'uidl="u3" size=300',
    f'ts={ts(870)} level=info event=dele sid=e1 ip=192.0.2.10 port=8001 user="alice" msg=1 '
    'uidl="u1" size=100',
    f'ts={ts(860)} level=info event=dele sid=e1 ip=192.0.2.10 port=8001 user="alice" msg=2 '
    'uidl="u2" size=200',
    f'ts={ts(800)} level=info event=retr sid=e2 ip=192.0.2.11 port=8002 user="bob" msg=1 '
    'uidl="v1" size=5000000',
    f'ts={ts(25 * 3600)} level=info event=retr sid=z1 ip=192.0.2.12 port=8003 user="bob" msg=2 '
    'uidl="v2" size=7',
    # Lines that are not Postern's audit events.
    "Nov 27 10:00:01 mail postfix/smtpd[99]: connect from unknown[192.0.2.3]",
    "Nov 27 10:00:02 mail posternd[4242]: ready: listening on 127.0.0.1:110",
    "Nov 27 10:00:03 mail prometheus[7]: ts=2026-11-27T10:00:03.000Z level=info msg=x",
    "",
    # Malformed.
    "this is not an audit line",
    f'ts={ts(500)} level=info event=auth_fail sid=x ip=10.0.0.1 port=1 user="unterminated',
    "ts=yesterday level=info event=auth_ok",
    f"ts={ts(400)} level=info event=retr sid=x ip=10.0.0.1 port=1 user=\"alice\" msg=1",
    f"ts={ts(300)} level=info event=auth_fail sid=x ip=10.0.0.1 port=1 user=\"a\" user=\"b\"",
]


@pytest.fixture
def synthetic(tmp_path):
    log = tmp_path / "audit.log"
    log.write_text("\n".join(SYNTHETIC) + "\n")
    return log


def test_synthetic_log(synthetic):
    out = report(synthetic).stdout
    tables, heads, cut = parse(out)

    assert heads["Postern report"] == f"Postern report: {synthetic}"
    assert heads["Window"].startswith("Window: the last 24h, from ")
    # 46 lines read (the empty one too): 37 events (4 older than 24 hours),
    # 3 lines of other programs, 5 malformed.
    assert heads["Lines"] == ("Lines: 46 read, 37 audit events (33 in the window), "
                              "3 from other programs, 5 malformed")
    assert heads["Events"] == ("Events: 2 logins, 9 failed logins (and 1 failed on the server's "
                               "side), 2 connections refused, 3 bans set, 8 alerts")
    assert "192.0.2.10" not in out.split("Failed logins by IP")[1].split("Active bans")[0]

    ips = by(tables["Failed logins by IP"], "IP")
    assert list(ips) == ["203.0.113.7", "2001:db8:1:2::7", "198.51.100.9"]
    assert ips["203.0.113.7"]["FAILURES"] == "4" and ips["203.0.113.7"]["USERS"] == "3"
    assert ips["203.0.113.7"]["LAST SEEN"] == ts(3300, ms=False)
    assert ips["2001:db8:1:2::7"]["FAILURES"] == "3" and ips["2001:db8:1:2::7"]["USERS"] == "1"
    assert ips["198.51.100.9"]["FAILURES"] == "2" and ips["198.51.100.9"]["USERS"] == "2"

    users = by(tables["Failed logins by account"], "ACCOUNT")
    assert list(users)[0] == "alice"
    assert users["alice"]["FAILURES"] == "4" and users["alice"]["IPS"] == "2"
    assert users["alice"]["LAST SEEN"] == ts(2900, ms=False)
    assert users["bob"]["FAILURES"] == "1" and users["carol"]["IPS"] == "1"
    assert users["dave"]["FAILURES"] == "1"
    # The escape reached the table as text, not as a control sequence.
    assert "ev\\x1b[2Jil" in users
    assert "\x1b" not in out

    bans = tables["Active bans"]
    assert [b["NET"] for b in bans] == ["203.0.113.7/32", "192.0.2.99/32"]
    assert bans[0]["BANNED AT"] == ts(3200, ms=False)
    assert bans[0]["UNTIL"] == ts(-900, ms=False) and bans[0]["FAILURES"] == "10"
    assert bans[1]["FAILURES"] == "50"

    kinds = by(tables["Alerts by kind"], "KIND")
    assert {k: v["COUNT"] for k, v in kinds.items()} == {
        "spray": "2", "account_under_attack": "1", "attack_signature": "1",
        "brute_force": "1", "download_volume": "1", "mass_delete": "1", "new_location": "1"}
    assert list(kinds)[0] == "spray"
    latest = tables["Latest alerts"]
    assert [a["KIND"] for a in latest] == ["account_under_attack", "new_location",
                                          "download_volume", "mass_delete", "attack_signature"]
    assert latest[-1]["SUBJECT"] == "192.0.2.66"
    assert latest[-1]["FACTS"] == 'sid=h1 what="format string"'
    assert latest[-1]["TIME"] == ts(1000, ms=False)
    assert latest[2]["FACTS"] == "messages=500 bytes=73400320 window=3600"

    dl = by(tables["Downloads by account"], "ACCOUNT")
    assert list(dl) == ["bob", "alice"]  # by bytes
    assert dl["alice"] == {"ACCOUNT": "alice", "MESSAGES": "3", "BYTES": "600", "DELETED": "2"}
    assert dl["bob"] == {"ACCOUNT": "bob", "MESSAGES": "1", "BYTES": "5000000", "DELETED": "0"}

    assert heads["Malformed lines"] == (
        "Malformed lines: 5 (line 42: not an audit line (no ts=); "
        "line 43: unterminated quoted value at column 99; "
        "line 44: ts is not a UTC ISO 8601 time; ...)")


def test_since_and_top(synthetic):
    tables, heads, cut = parse(report("--since", "2d", synthetic).stdout)
    assert heads["Window"].startswith("Window: the last 2d, ")
    assert heads["Lines"].startswith("Lines: 46 read, 37 audit events (36 in the window)")
    ips = by(tables["Failed logins by IP"], "IP")
    assert ips["192.0.2.200"]["FAILURES"] == "1"
    assert by(tables["Failed logins by account"], "ACCOUNT")["alice"]["FAILURES"] == "5"
    assert by(tables["Downloads by account"], "ACCOUNT")["bob"]["BYTES"] == "5000007"
    assert by(tables["Alerts by kind"], "KIND")["cleartext"]["COUNT"] == "1"

    tables, heads, cut = parse(report("--since=90m", "--top", "1", synthetic).stdout)
    assert heads["Events"].startswith("Events: 2 logins, 9 failed logins")
    assert cut["Failed logins by IP"] == (1, 3)
    assert [r["IP"] for r in tables["Failed logins by IP"]] == ["203.0.113.7"]
    assert cut["Active bans"] == (1, 2)
    assert len(tables["Downloads by account"]) == 1

    tables, heads, _ = parse(report("--since", "3600s", synthetic).stdout)
    # Only what happened in the last hour: 203.0.113.7's first failure
    # (exactly one hour ago) may or may not be in, the rest is.
    assert by(tables["Failed logins by IP"], "IP")["2001:db8:1:2::7"]["FAILURES"] == "3"
    tables, heads, _ = parse(report("--since", "10m", synthetic).stdout)
    assert tables["Failed logins by IP"] == []
    assert heads["Events"] == ("Events: 0 logins, 0 failed logins (and 0 failed on the server's "
                               "side), 0 connections refused, 0 bans set, 0 alerts")
    # Bans are state: they show whatever the window.
    assert len(tables["Active bans"]) == 2


def test_stdin_and_errors(synthetic):
    text = synthetic.read_text()
    out = report("-", stdin=text).stdout
    assert out.startswith("Postern report: standard input\n")
    assert parse(out)[1]["Lines"] == parse(report(synthetic).stdout)[1]["Lines"]

    for bad in ("24", "h", "0h", "-1h", "1.5h", "24hours", "1w", "99999999999d", ""):
        p = report("--since", bad, synthetic, check=False)
        assert p.returncode == 64, bad
        assert "--since" in p.stderr and "24h" in p.stderr
    p = report("--top", "0", synthetic, check=False)
    assert p.returncode == 64 and "--top" in p.stderr
    p = report(check=False)
    assert p.returncode == 64 and "usage: postern report" in p.stderr
    p = report("--frobnicate", synthetic, check=False)
    assert p.returncode == 64 and "unknown option --frobnicate" in p.stderr
    p = report(synthetic, synthetic, check=False)
    assert p.returncode == 64
    p = report(synthetic.parent / "missing.log", check=False)
    assert p.returncode == 66 and "cannot open" in p.stderr and "missing.log" in p.stderr
    # No configuration is read: a -c naming a missing file does not matter.
    p = subprocess.run([str(POSTERN), "-c", "/nonexistent.conf", "report", str(synthetic)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_empty_and_hostile_input(tmp_path):
    empty = tmp_path / "empty.log"
    empty.write_text("")
    tables, heads, _ = parse(report(empty).stdout)
    assert heads["Lines"] == ("Lines: 0 read, 0 audit events (0 in the window), "
                              "0 from other programs, 0 malformed")
    for t in ("Failed logins by IP", "Failed logins by account", "Active bans", "Alerts by kind",
              "Downloads by account"):
        assert tables[t] == []
    assert heads["Malformed lines"] == "Malformed lines: 0"

    # Binary junk, NUL bytes, an enormous line, CRLF endings: counted, never fatal.
    junk = tmp_path / "junk.log"
    good = (f'ts={ts(60)} level=info event=auth_fail sid=1 ip=192.0.2.1 port=1 user="{"x" * 200}" '
            'mech=USER tls=no reason="bad password"')
    junk.write_bytes(b"\x00\xff\xfe garbage\n" + b"ts=" + b"a" * 200000 + b"\n" +
                     good.encode() + b"\r\n" + b"ts=\x00\n" + bytes(range(256)) + b"\n")
    out = report(junk).stdout
    tables, heads, _ = parse(out)
    # bytes(range(256)) holds a newline: 6 lines.
    assert heads["Lines"].startswith("Lines: 6 read, 1 audit events")
    assert heads["Lines"].endswith("5 malformed")
    # A long name is cut in the table, with the rest of the row in place.
    row = tables["Failed logins by account"][0]
    assert row["ACCOUNT"] == "x" * 37 + "..." and row["FAILURES"] == "1"
    assert all(32 <= ord(ch) < 127 for ch in out.replace("\n", ""))


def test_report_on_a_real_server_log(site, start_server):
    site.add_user("alice", "secret-alice-1")
    site.add_user("bob", "hunter2-bob")
    msgs = [b"Subject: 1\n\none\n", b"Subject: 2\n\n" + b"two\n" * 500, b"Subject: 3\n\nthree"]
    for m in msgs:
        site.deliver("alice", m)
    srv = start_server()
    c = srv.client()
    c.ok("USER mallory")
    c.err("PASS guess1")
    c.ok("USER alice")
    c.err("PASS guess2")
    c.ok("USER alice")
    c.err("PASS guess3")
    c.login("alice", "secret-alice-1")
    busy = srv.client()
    busy.ok("USER alice")
    assert "[IN-USE]" in busy.err("PASS secret-alice-1")
    busy.quit()
    c.retr(1)
    c.retr(2)
    c.ok("DELE 1")
    c.ok("DELE 3")
    c.quit()
    c = srv.client()
    c.login("bob", "hunter2-bob")
    c.quit()
    srv.wait_audit(lambda e: len([x for x in srv.audit_events() if x["event"] == "disconnect"]) == 3)

    tables, heads, _ = parse(report(srv.audit_path).stdout)
    n = len(srv.audit_text().split("\n")) - 1
    assert heads["Lines"] == (f"Lines: {n} read, {n} audit events ({n} in the window), "
                              "0 from other programs, 0 malformed")
    assert heads["Events"] == ("Events: 2 logins, 3 failed logins (and 1 failed on the server's "
                               "side), 0 connections refused, 0 bans set, 0 alerts")
    ips = by(tables["Failed logins by IP"], "IP")
    assert list(ips) == ["127.0.0.1"]
    assert ips["127.0.0.1"]["FAILURES"] == "3" and ips["127.0.0.1"]["USERS"] == "2"
    users = by(tables["Failed logins by account"], "ACCOUNT")
    assert users["alice"]["FAILURES"] == "2" and users["mallory"]["FAILURES"] == "1"
    dl = by(tables["Downloads by account"], "ACCOUNT")
    assert list(dl) == ["alice"]
    assert dl["alice"]["MESSAGES"] == "2"
    assert dl["alice"]["BYTES"] == str(len(to_wire(msgs[0])) + len(to_wire(msgs[1])))
    assert dl["alice"]["DELETED"] == "2"
    assert heads["Malformed lines"] == "Malformed lines: 0"
