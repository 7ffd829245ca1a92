"""
contrib/fail2ban and contrib/crowdsec against real audit logs (issue 6):
Debian's fail2ban-regex must match exactly the failed-login lines a real
server wrote, take the client's address (and the right time) from them,
and never match a successful login or a value a client chose. The CrowdSec
files must load as YAML and their grok pattern must read the same lines.
"""

import base64
import calendar
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import HAVE_IPV6, REPO, Client, parse_logfmt

FILTER = REPO / "contrib" / "fail2ban" / "filter.d" / "postern.conf"
JAIL = REPO / "contrib" / "fail2ban" / "jail.d" / "postern.conf"
CS_PARSER = REPO / "contrib" / "crowdsec" / "parsers" / "s01-parse" / "postern-logs.yaml"
CS_SCENARIO = REPO / "contrib" / "crowdsec" / "scenarios" / "postern-bf.yaml"
FAIL2BAN_REGEX = shutil.which("fail2ban-regex") or (
    "/usr/bin/fail2ban-regex" if Path("/usr/bin/fail2ban-regex").exists() else None)
needs_fail2ban = pytest.mark.skipif(FAIL2BAN_REGEX is None,
                                    reason="fail2ban not installed (scripts/deps test)")

# A user name with the characters the log must escape or quote (the server
# refuses names with spaces; the synthetic lines below forge whole fields).
ODD_USER = 'q"uo\\te=ip=192.0.2.66'


def b64(s):
    return base64.b64encode(s.encode("latin-1")).decode()


def fail2ban_regex(log, filt=FILTER, *args):
    """Runs fail2ban-regex; returns its stdout."""
    p = subprocess.run([FAIL2BAN_REGEX, *args, str(log), str(filt)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"fail2ban-regex failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def classify(log, filt=FILTER):
    """(matched, ignored, missed): the lines as fail2ban-regex lists them."""
    out = fail2ban_regex(log, filt, "--print-all-matched", "--print-all-missed",
                         "--print-all-ignored")
    sections = {"Matched": [], "Ignored": [], "Missed": []}
    current = None
    for line in out.splitlines():
        m = re.match(r"^\|- (Matched|Ignored|Missed) line\(s\):", line)
        if m:
            current = m.group(1)
        elif line.startswith("`-"):
            current = None
        elif current and line.startswith("|  "):
            sections[current].append(line[3:])
    total = re.search(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", out, re.M)
    assert total, out
    assert int(total.group(2)) == len(sections["Ignored"]), out
    assert int(total.group(3)) == len(sections["Matched"]), out
    assert int(total.group(4)) == len(sections["Missed"]), out
    return sections["Matched"], sections["Ignored"], sections["Missed"]


def failures_seen(log, filt=FILTER):
    """[(address, epoch seconds)] of each failure, as fail2ban takes them."""
    out = fail2ban_regex(log, filt, "-o", "row")
    rows = re.findall(r"^\['([^']+)',\s*(\d+(?:\.\d+)?),", out, re.M)
    return [(ip, int(float(t))) for ip, t in rows]


def epoch(ts):
    """Seconds since the epoch of an audit ts= (UTC), fraction dropped."""
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)", ts)
    return calendar.timegm(tuple(int(x) for x in m.groups()) + (0, 0, 0))


@pytest.fixture
def cert(site):
    """A self-signed certificate for localhost, so require_tls can apply."""
    tls = site.root / "tls"
    tls.mkdir(exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tls / "key.pem"),
                    "-out", str(tls / "cert.pem"), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=60)
    return tls


@pytest.fixture
def attacked(site, start_server, cert):
    """A server and an audit log with failed and successful logins of every
    kind a client can cause."""
    site.add_user("alice", "secret-alice-1")
    site.add_user("bob", "hunter2-bob")
    site.deliver("alice", b"Subject: 1\n\none\n")
    srv = start_server(**{"tls.cert": "tls/cert.pem", "tls.key": "tls/key.pem",
                          "auth.require_tls": "no"})
    c = srv.client()
    c.ok("USER nosuchuser")
    c.err("PASS whatever")                                   # unknown user
    c.ok("USER alice")
    c.err("PASS wrong-password")                             # bad password
    assert c.cmd("AUTH PLAIN " + b64("\0bob\0wrong")).startswith("-ERR")
    c.ok(f"USER {ODD_USER}")
    c.err("PASS pw")
    c.login("alice", "secret-alice-1")                       # success
    c.retr(1)
    busy = srv.client()                                      # right password,
    busy.ok("USER alice")                                    # mailbox in use:
    assert "[IN-USE]" in busy.err("PASS secret-alice-1")     # not a guess
    busy.quit()
    c.quit()
    c = srv.client()
    assert c.cmd("AUTH PLAIN " + b64("\0bob\0hunter2-bob")).startswith("+OK")
    c.quit()
    if HAVE_IPV6:
        c = Client(srv.port, host="::1")
        c.ok("USER alice")
        c.err("PASS wrong-from-v6")
        c.quit()
    srv.wait_audit(lambda e: len([x for x in srv.audit_events()
                                  if x["event"] == "disconnect"]) == (4 if HAVE_IPV6 else 3))
    srv.stop()
    srv.stopped_by_test = True
    disconnects = len([x for x in srv.audit_events() if x["event"] == "disconnect"])
    # The same server with TLS required: credentials in clear text are
    # refused and logged as failures (reason="cleartext").
    srv2 = start_server(**{"tls.cert": "tls/cert.pem", "tls.key": "tls/key.pem",
                           "auth.allow_plaintext_loopback": "no"})
    c = srv2.client()
    assert c.cmd("USER alice").startswith("-ERR")
    assert c.cmd("PASS secret-alice-1").startswith("-ERR")
    c.quit()
    # Both servers write the site's one audit log.
    srv2.wait_audit(lambda e: len([x for x in srv2.audit_events() if x["event"] == "disconnect"])
                    == disconnects + 1, what="second server's disconnect")
    return srv2


def audit_lines(srv):
    return [line for line in srv.audit_text().split("\n") if line]


SERVER_SIDE = ("mailbox in use", "mailbox unavailable", "mailbox unusable", "passdb unavailable")


def guesses(events):
    """The auth_fail events that count: not those on the server's side."""
    return [e for e in events if e["event"] == "auth_fail" and e.get("reason") not in SERVER_SIDE]


@needs_fail2ban
def test_fail2ban_matches_exactly_the_failed_logins(attacked):
    srv = attacked
    lines = audit_lines(srv)
    events = [parse_logfmt(line) for line in lines]
    fails = [line for line, e in zip(lines, events) if e in guesses(events)]
    in_use = [line for line, e in zip(lines, events) if e.get("reason") == "mailbox in use"]
    oks = [line for line, e in zip(lines, events) if e["event"] == "auth_ok"]
    reasons = {e.get("reason") for e in events if e["event"] == "auth_fail"}
    assert {"unknown user", "bad password", "cleartext", "mailbox in use"} <= reasons, reasons
    assert len(oks) == 2 and len(in_use) == 1
    assert ODD_USER in [e.get("user") for e in events if e["event"] == "auth_fail"]

    matched, ignored, missed = classify(srv.audit_path)
    assert sorted(matched) == sorted(fails)
    assert ignored == in_use
    assert sorted(missed) == sorted(set(lines) - set(fails) - set(in_use))
    for line in oks:
        assert line in missed


@needs_fail2ban
def test_fail2ban_takes_the_clients_address_and_time(attacked):
    srv = attacked
    fails = guesses(srv.audit_events())
    seen = failures_seen(srv.audit_path)
    assert [ip for ip, _ in seen] == [e["ip"] for e in fails]
    # The odd name did not supply its address.
    assert "192.0.2.66" not in [ip for ip, _ in seen]
    if HAVE_IPV6:
        assert "::1" in [ip for ip, _ in seen]
    # ts= is UTC: fail2ban must read the Z, whatever the local zone.
    assert [t for _, t in seen] == [epoch(e["ts"]) for e in fails]


def _synthetic(tmp_path, lines):
    log = tmp_path / "synthetic.log"
    log.write_text("".join(line + "\n" for line in lines))
    return log


TS = "2026-11-27T10:00:00.000Z"
SYNTHETIC_FAIL = [
    # syslog: posternd's lines inside a system log file.
    f"Nov 27 10:00:00 mail posternd[4242]: ts={TS} level=info event=auth_fail sid=7 "
    'ip=203.0.113.7 port=5 user="alice" mech=USER tls=no reason="bad password"',
    f"2026-11-27T10:00:00.123456+00:00 mail posternd[4242]: ts={TS} level=warning "
    'event=auth_fail sid=8 ip=2001:db8::8 port=5 mech=PASS tls=no reason="cleartext"',
    # An escaped quote in the name, and a name that imitates a line.
    f"ts={TS} level=info event=auth_fail sid=9 ip=198.51.100.9 port=5 "
    'user="q\\"ip=192.0.2.66 level=info event=auth_fail sid=1 ip=192.0.2.66 port=1" mech=USER '
    'tls=no reason="unknown user"',
    # A name that imitates the reasons ignoreregex skips.
    f"ts={TS} level=info event=auth_fail sid=12 ip=198.51.100.12 port=5 "
    'user="x reason=\\"mailbox in use\\"" mech=PLAIN tls=yes reason="bad password"',
]
SYNTHETIC_IGNORED = [
    f"ts={TS} level=info event=auth_fail sid=10 ip=192.0.2.10 port=5 user=\"alice\" mech=USER "
    'tls=yes reason="mailbox in use"',
    f"ts={TS} level=info event=auth_fail sid=11 ip=192.0.2.10 port=5 user=\"alice\" mech=PLAIN "
    'tls=yes reason="passdb unavailable"',
]
SYNTHETIC_OTHER = [
    f"ts={TS} level=info event=auth_ok sid=1 ip=203.0.113.8 port=5 user=\"alice\" mech=USER "
    "factor=password tls=yes",
    f"ts={TS} level=warning event=refused sid=2 ip=203.0.113.7 port=5 reason=\"banned\"",
    f"ts={TS} level=warning event=ban ip=203.0.113.7 net=203.0.113.7/32 failures=10 window=600 "
    "until=2026-11-27T10:15:00Z",
    f"ts={TS} level=info event=unban net=203.0.113.7/32 reason=expired",
    f"ts={TS} level=warning event=alert kind=brute_force subject=\"203.0.113.7/32\" failures=10 "
    "window=600",
    f"ts={TS} level=warning event=alert kind=attack_signature subject=\"192.0.2.77\" sid=3 "
    "what=\"format string\"",
    # Another program's line that mentions the same words.
    "Nov 27 10:00:00 mail other[1]: level=info event=auth_fail sid=1 ip=192.0.2.55 port=1",
    # A client-chosen value that would start a line, inside another event.
    f"ts={TS} level=info event=retr sid=4 ip=203.0.113.8 port=5 user=\"x event=auth_fail sid=1 "
    "ip=192.0.2.56 port=1\" msg=1 uidl=\"u\" size=10",
]


@needs_fail2ban
def test_fail2ban_syslog_prefix_and_forgeries(tmp_path):
    log = _synthetic(tmp_path, SYNTHETIC_FAIL + SYNTHETIC_IGNORED + SYNTHETIC_OTHER)
    matched, ignored, missed = classify(log)
    assert sorted(matched) == sorted(SYNTHETIC_FAIL)
    assert sorted(ignored) == sorted(SYNTHETIC_IGNORED)
    assert sorted(missed) == sorted(SYNTHETIC_OTHER)
    seen = failures_seen(log)
    assert [ip for ip, _ in seen] == ["203.0.113.7", "2001:db8::8", "198.51.100.9",
                                      "198.51.100.12"]
    assert {t for _, t in seen} == {1795773600}


@needs_fail2ban
def test_fail2ban_modes(tmp_path):
    log = _synthetic(tmp_path, SYNTHETIC_FAIL + SYNTHETIC_OTHER)
    abuse = [ip for ip, _ in failures_seen(log, f"{FILTER}[mode=abuse]")]
    assert abuse == ["192.0.2.77"]
    both = [ip for ip, _ in failures_seen(log, f"{FILTER}[mode=aggressive]")]
    assert sorted(both) == sorted(["203.0.113.7", "2001:db8::8", "198.51.100.9", "198.51.100.12",
                                   "192.0.2.77"])


def test_jail_names_the_filter_and_ports():
    import configparser

    jail = configparser.ConfigParser(interpolation=None)
    jail.read(JAIL)
    assert jail["postern"]["filter"].strip() == "postern"
    assert jail["postern"]["port"].strip() == "pop3,pop3s"
    assert jail["postern"]["logpath"].strip().endswith("audit.log")
    for key in ("maxretry", "findtime", "bantime"):
        assert jail["postern"][key].strip()


# --------------------------------------------------------------------------
# CrowdSec
# --------------------------------------------------------------------------

try:
    import yaml
except ImportError:  # the checks of the CrowdSec files need PyYAML (python3-yaml)
    yaml = None
needs_yaml = pytest.mark.skipif(yaml is None, reason="no yaml module for this python")

# The standard grok patterns the parser uses, as CrowdSec defines them
# (IPV6 simplified: the lines here hold well-formed addresses).
GROK = {
    "WORD": r"\b\w+\b",
    "NOTSPACE": r"\S+",
    "INT": r"(?:[+-]?(?:[0-9]+))",
    "IPV6": r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})",
}


def grok_to_re(pattern, syntax):
    defs = dict(GROK, **syntax)

    def sub(m):
        name, _, field = m.group(1).partition(":")
        inner = grok_to_re(defs[name], syntax)
        return f"(?P<{field}>{inner})" if field else f"(?:{inner})"

    return re.sub(r"%\{([A-Za-z0-9_]+(?::[a-z_]+)?)\}", sub, pattern)


@needs_yaml
def test_crowdsec_files_load_and_read_audit_lines():
    parser = yaml.safe_load(CS_PARSER.read_text())
    assert parser["name"] == "postern/postern-logs"
    assert parser["onsuccess"] == "next_stage"
    assert "posternd" in parser["filter"] and "postern" in parser["filter"]
    statics = {s.get("meta") or s.get("target"): s for s in parser["statics"]}
    assert statics["source_ip"]["expression"] == "evt.Parsed.postern_ip"
    assert statics["evt.StrTime"]["expression"] == "evt.Parsed.postern_ts"
    node = parser["nodes"][0]
    assert node["grok"]["apply_on"] == "message"
    node_statics = {s["meta"]: s for s in node["grok"]["statics"]}
    log_type = node_statics["log_type"]["expression"]
    assert "'postern_failed_auth'" in log_type
    for reason in SERVER_SIDE:
        assert f"'{reason}'" in log_type
    assert node_statics["user"]["expression"] == "evt.Parsed.postern_user"

    scenarios = list(yaml.safe_load_all(CS_SCENARIO.read_text()))
    assert [s["name"] for s in scenarios] == ["postern/postern-bf", "postern/postern-bf_user-enum"]
    for s in scenarios:
        assert s["type"] == "leaky"
        assert "postern_failed_auth" in s["filter"]
        assert s["groupby"] == "evt.Meta.source_ip"
        assert isinstance(s["capacity"], int) and s["capacity"] > 0
        assert re.match(r"^\d+[smh]$", s["leakspeed"])
        assert s["labels"]["remediation"] is True
    assert scenarios[1]["distinct"] == "evt.Meta.target_user"

    grok = re.compile(grok_to_re(node["grok"]["pattern"], parser["pattern_syntax"]))
    # What the syslog stage hands over as the message: the audit line.
    messages = [line.split(": ", 1)[1] if not line.startswith("ts=") else line
                for line in SYNTHETIC_FAIL]
    got = [grok.match(m) for m in messages]
    assert all(got), messages
    assert [m.group("postern_ip") for m in got] == ["203.0.113.7", "2001:db8::8", "198.51.100.9",
                                                    "198.51.100.12"]
    assert got[0].group("postern_user") == "alice"
    assert got[1].group("postern_user") is None  # cleartext PASS: no name
    assert got[2].group("postern_ts") == TS
    assert [m.group("postern_reason") for m in got] == [
        "bad password", "cleartext", "unknown user", "bad password"]
    # Server-side failures are read, with the reason that makes log_type
    # postern_server_failure rather than postern_failed_auth.
    for line in SYNTHETIC_IGNORED:
        assert grok.match(line).group("postern_reason") in SERVER_SIDE
    for line in SYNTHETIC_OTHER:
        assert not grok.match(line), line


@needs_yaml
def test_crowdsec_reads_a_real_log(site, start_server):
    site.add_user("alice", "secret-alice-1")
    srv = start_server()
    c = srv.client()
    c.ok("USER alice")
    c.err("PASS nope")
    c.login("alice", "secret-alice-1")
    c.quit()
    srv.wait_audit(lambda e: e["event"] == "disconnect")
    parser = yaml.safe_load(CS_PARSER.read_text())
    grok = re.compile(grok_to_re(parser["nodes"][0]["grok"]["pattern"], parser["pattern_syntax"]))
    hits = [grok.match(line) for line in audit_lines(srv)]
    kinds = [parse_logfmt(line)["event"] for line in audit_lines(srv)]
    assert [k for k, h in zip(kinds, hits) if h] == ["auth_fail"]
    hit = next(h for h in hits if h)
    assert hit.group("postern_ip") == "127.0.0.1" and hit.group("postern_user") == "alice"
