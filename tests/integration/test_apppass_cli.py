"""
`postern app-password add|list|revoke`: generated per-device passwords,
stored as a salted SHA-256 in <state_dir>/app-passwords, and removed with
their account by `postern user del`.
"""

import hashlib
import os
import re
import stat
import time
from datetime import datetime, timezone

import pytest

from test_cli import run  # the CLI runner with its sanitizer checks

SHOWN_RE = re.compile(r"^[a-z2-7]{4}(-[a-z2-7]{4}){4}$")
LINE_RE = re.compile(r"^([^:]+):([^:]+):(\d+):(\d+):([0-9a-f]{32}):([0-9a-f]{64})$")


@pytest.fixture
def cli_site(site):
    site.write_config(1)  # the CLI never listens; any port will do
    site.add_user("alice", "secret")
    site.add_user("bob", "hunter22")
    return site


def store(site):
    return site.root / "state" / "app-passwords"


def lines(site):
    return store(site).read_text().splitlines()


def add(site, user, label):
    p = run(site, "app-password", "add", user, label)
    assert p.returncode == 0, p.stderr
    shown = p.stdout.decode().strip()
    assert SHOWN_RE.match(shown), p.stdout
    return shown


def test_add_prints_a_password_once_and_stores_only_its_hash(cli_site):
    before = int(time.time())
    p = run(cli_site, "app-password", "add", "alice", "laptop")
    after = int(time.time())
    assert p.returncode == 0, p.stderr
    # stdout holds the password alone, so a script can capture it.
    out = p.stdout.decode()
    assert out.endswith("\n") and out.count("\n") == 1, out
    shown = out.strip()
    assert SHOWN_RE.match(shown), out
    assert b"will not be shown again" in p.stderr
    plain = shown.replace("-", "")

    text = store(cli_site).read_text()
    assert plain not in text and shown not in text
    [line] = text.splitlines()
    m = LINE_RE.match(line)
    assert m, line
    user, label, created, last_used, salt, digest = m.groups()
    assert (user, label, last_used) == ("alice", "laptop", "0")
    assert before <= int(created) <= after
    # The stored hash is SHA-256 over the salt, then the 20 characters.
    assert hashlib.sha256(bytes.fromhex(salt) + plain.encode()).hexdigest() == digest

    mode = stat.S_IMODE(os.stat(store(cli_site)).st_mode)
    assert mode == 0o600, oct(mode)

    # Another one: a different secret and salt.
    shown2 = add(cli_site, "alice", "phone")
    assert shown2 != shown
    salts = [LINE_RE.match(l).group(5) for l in lines(cli_site)]
    assert len(set(salts)) == 2
    assert stat.S_IMODE(os.stat(store(cli_site)).st_mode) == 0o600


def test_list_shows_label_created_and_last_use(cli_site):
    p = run(cli_site, "app-password", "list", "alice")
    assert p.returncode == 0 and p.stdout == b"", p.stderr  # none yet

    add(cli_site, "alice", "laptop")
    add(cli_site, "alice", "Work-Phone_2")
    add(cli_site, "bob", "tablet")
    p = run(cli_site, "app-password", "list", "alice")
    assert p.returncode == 0, p.stderr
    rows = [r.split() for r in p.stdout.decode().splitlines()]
    assert [r[0] for r in rows] == ["laptop", "Work-Phone_2"]
    now = datetime.now(timezone.utc)
    for r in rows:
        assert len(r) == 3, r
        created = datetime.strptime(r[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert abs((now - created).total_seconds()) < 120
        assert r[2] == "never"
    out = p.stdout.decode()
    assert "tablet" not in out
    for l in lines(cli_site):
        salt, digest = LINE_RE.match(l).group(5, 6)
        assert salt not in out and digest not in out

    # A recorded use (as the server writes it) is shown in UTC.
    text = store(cli_site).read_text()
    text = re.sub(r"^(alice:laptop:\d+):0:", r"\1:1764240000:", text, flags=re.M)
    store(cli_site).write_text(text)
    p = run(cli_site, "app-password", "list", "alice")
    first = p.stdout.decode().splitlines()[0].split()
    assert first[0] == "laptop" and first[2] == "2025-11-27T10:40:00Z", first


def test_duplicate_and_invalid_labels_are_refused(cli_site):
    add(cli_site, "alice", "laptop")
    before = store(cli_site).read_text()
    p = run(cli_site, "app-password", "add", "alice", "laptop")
    assert p.returncode == 65 and b"laptop already" in p.stderr, p.stderr
    assert p.stdout == b""
    for bad in ("", "lap top", "a:b", "a/b", "x" * 33, "caf\u00e9"):
        p = run(cli_site, "app-password", "add", "alice", bad)
        assert p.returncode == 65 and b"invalid label" in p.stderr, (bad, p.stderr)
        assert p.stdout == b""
    assert store(cli_site).read_text() == before
    # The same label for another user is fine.
    add(cli_site, "bob", "laptop")
    add(cli_site, "alice", "x" * 32)


def test_revoke(cli_site):
    add(cli_site, "alice", "laptop")
    add(cli_site, "alice", "phone")
    add(cli_site, "bob", "laptop")
    p = run(cli_site, "app-password", "revoke", "alice", "laptop")
    assert p.returncode == 0, p.stderr
    assert b"revoked" in p.stdout
    assert [l.split(":")[:2] for l in lines(cli_site)] == [["alice", "phone"], ["bob", "laptop"]]
    p = run(cli_site, "app-password", "list", "alice")
    assert [r.split()[0] for r in p.stdout.decode().splitlines()] == ["phone"]

    before = store(cli_site).read_text()
    p = run(cli_site, "app-password", "revoke", "alice", "laptop")
    assert p.returncode == 65 and b"no app password labelled laptop" in p.stderr, p.stderr
    p = run(cli_site, "app-password", "revoke", "alice", "tablet")
    assert p.returncode == 65
    assert store(cli_site).read_text() == before
    assert stat.S_IMODE(os.stat(store(cli_site)).st_mode) == 0o600


def test_unknown_user_and_usage_errors(cli_site):
    p = run(cli_site, "app-password", "add", "carol", "laptop")
    assert p.returncode == 67 and b"no user carol" in p.stderr, p.stderr
    assert p.stdout == b""
    assert not store(cli_site).exists() or store(cli_site).read_text() == ""
    p = run(cli_site, "app-password", "list", "carol")
    assert p.returncode == 67 and b"no user carol" in p.stderr
    p = run(cli_site, "app-password", "revoke", "carol", "laptop")
    assert p.returncode == 65
    for args in (
        ["app-password"],
        ["app-password", "add", "alice"],
        ["app-password", "list"],
        ["app-password", "revoke", "alice"],
        ["app-password", "rename", "alice", "a", "b"],
    ):
        p = run(cli_site, *args)
        assert p.returncode == 64 and b"usage" in p.stderr, (args, p.stderr)
    p = run(cli_site, "-h")
    assert b"app-password add NAME LABEL" in p.stdout


def test_user_del_removes_the_accounts_app_passwords(cli_site):
    add(cli_site, "alice", "laptop")
    add(cli_site, "bob", "tablet")
    add(cli_site, "alice", "phone")
    p = run(cli_site, "user", "del", "alice")
    assert p.returncode == 0, p.stderr
    assert b"2 app passwords of alice removed" in p.stdout, p.stdout
    assert [l.split(":")[:2] for l in lines(cli_site)] == [["bob", "tablet"]]
    assert stat.S_IMODE(os.stat(store(cli_site)).st_mode) == 0o600
    # A new account of the same name starts without them.
    p = run(cli_site, "user", "add", "alice", stdin=b"another long password\n")
    assert p.returncode == 0, p.stderr
    p = run(cli_site, "app-password", "list", "alice")
    assert p.returncode == 0 and p.stdout == b""
    # An account without app passwords is deleted as before.
    p = run(cli_site, "user", "del", "alice")
    assert p.returncode == 0 and b"app password" not in p.stdout, p.stdout
    assert [l.split(":")[:2] for l in lines(cli_site)] == [["bob", "tablet"]]
    p = run(cli_site, "user", "del", "bob")
    assert p.returncode == 0 and b"1 app password of bob removed" in p.stdout, p.stdout
    assert lines(cli_site) == []


def test_other_lines_are_kept(cli_site):
    store(cli_site).parent.mkdir(exist_ok=True)
    store(cli_site).write_text("# written by hand\nnot a valid line\n")
    os.chmod(store(cli_site), 0o600)
    add(cli_site, "alice", "laptop")
    assert lines(cli_site)[:2] == ["# written by hand", "not a valid line"]
    p = run(cli_site, "app-password", "list", "alice")
    assert p.returncode == 0 and b"line ignored" in p.stderr
    assert p.stdout.decode().split()[0] == "laptop"
