"""
Configuration errors stop posternd at start-up with a message naming the
file, the line and the key (DESIGN.md section 4).
"""

import re
import socket
import subprocess

import pytest

from conftest import ASAN_BIN, free_port
from conftest import run_posternd_conf as run_posternd

GOOD = """\
[server]
listen = 127.0.0.1:{port}
threads = 1
[auth]
passdb = passwd-file:users
allow_plaintext_loopback = yes
[mail]
location = maildir:mail/%u/Maildir
[log]
audit = audit.log
"""


def with_line(text, after, line):
    """Inserts line after the first line starting with after; returns
    (new text, 1-based number of the inserted line)."""
    lines = text.splitlines()
    i = next(n for n, l in enumerate(lines) if l.startswith(after))
    lines.insert(i + 1, line)
    return "\n".join(lines) + "\n", i + 2


def replace_line(text, prefix, line):
    lines = text.splitlines()
    i = next(n for n, l in enumerate(lines) if l.startswith(prefix))
    lines[i] = line
    return "\n".join(lines) + "\n", i + 1


BAD = [
    # (id, how to break the good file, key that must be named)
    ("unknown_key", lambda t: with_line(t, "threads", "bogus = 1"), "bogus"),
    ("unknown_key_other_section", lambda t: with_line(t, "location", "mailbox_format = x"),
     "mailbox_format"),
    ("unknown_section", lambda t: with_line(t, "audit", "[nosuch]\nkey = 1"), "nosuch"),
    ("bad_number", lambda t: replace_line(t, "threads", "threads = many"), "threads"),
    ("number_out_of_range", lambda t: with_line(t, "location", "[limits]\nmax_line = 100"),
     "max_line"),
    ("zero_timeout", lambda t: with_line(t, "location", "[limits]\nidle_timeout = 0"),
     "idle_timeout"),
    ("negative", lambda t: with_line(t, "location", "[limits]\nmax_connections = -5"),
     "max_connections"),
    ("bad_bool", lambda t: with_line(t, "passdb", "apop = maybe"), "apop"),
    ("bad_listen", lambda t: replace_line(t, "listen", "listen = 127.0.0.1"), "listen"),
    ("bad_port", lambda t: replace_line(t, "listen", "listen = 127.0.0.1:99999"), "listen"),
    ("duplicate_key", lambda t: with_line(t, "threads", "threads = 2"), "threads"),
    ("empty_value", lambda t: replace_line(t, "location", "location ="), "location"),
]


@pytest.mark.parametrize("case", BAD, ids=[b[0] for b in BAD])
def test_bad_configuration_names_file_line_and_key(site, case):
    _, breaker, key = case
    text, line = breaker(GOOD.format(port=free_port()))
    if case[0] in ("number_out_of_range", "zero_timeout", "negative"):
        line += 1  # the key is on the line after the section header
    rc, err, path = run_posternd(site, text)
    assert rc != 0
    assert f"{path}:{line}:" in err, err
    assert key in err, err


def test_missing_required_key(site):
    text = "\n".join(l for l in GOOD.format(port=free_port()).splitlines()
                     if not l.startswith("location")) + "\n"
    rc, err, path = run_posternd(site, text)
    assert rc != 0
    assert str(path) in err and "location" in err, err


def test_syntax_error_names_line(site):
    text, line = with_line(GOOD.format(port=free_port()), "threads", "this is not ini")
    rc, err, path = run_posternd(site, text)
    assert rc != 0
    assert f"{path}:{line}:" in err, err


def test_missing_config_file(site):
    if not ASAN_BIN.exists():
        pytest.skip(f"{ASAN_BIN} not built")
    missing = site.root / "nosuch.conf"
    p = subprocess.run([str(ASAN_BIN), "-c", str(missing), "-f"], capture_output=True,
                       timeout=20)
    assert p.returncode != 0
    assert str(missing) in p.stderr.decode()


def test_missing_passdb_file(site):
    text = GOOD.format(port=free_port()).replace("passwd-file:users", "passwd-file:nosuch-users")
    rc, err, path = run_posternd(site, text)
    assert rc != 0
    assert "passdb" in err and str(site.root / "nosuch-users") in err, err


def test_missing_passdb_file_names_config_line(site):
    text = GOOD.format(port=free_port()).replace("passwd-file:users", "passwd-file:nosuch-users")
    rc, err, path = run_posternd(site, text)
    assert rc != 0
    assert f"{path}:5:" in err, err


def test_port_in_use(site):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, err, _ = run_posternd(site, GOOD.format(port=port))
    assert rc != 0
    assert "listen" in err and str(port) in err, err


def test_good_configuration_starts(site, start_server):
    srv = start_server()
    assert srv.alive()
    assert re.search(r"ready", srv.stderr_text())
