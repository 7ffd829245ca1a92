"""
`postern totp enroll|disable` and `postern user mfa`: the second factor
kept in the passwd-file's extra fields, the otpauth:// URI and the QR code
an authenticator app scans.
"""

import base64
import hashlib
import hmac
import re
import struct
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from test_cli import run, users_text

URI_RE = re.compile(r"^otpauth://totp/[^\s]+$", re.M)


@pytest.fixture
def cli_site(site):
    site.write_config(1)  # the CLI never listens; any port will do
    return site


def line_of(site, name):
    lines = [l for l in users_text(site).splitlines() if l.split(":", 1)[0] == name]
    assert len(lines) == 1, users_text(site)
    return lines[0]


def extras(line):
    parts = line.split(":", 7)
    return parts[7].split() if len(parts) == 8 else []


def totp_code(secret_b32, t, step=30, digits=6):
    """RFC 6238 with HMAC-SHA-1, written here independently of the C code."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8), casefold=True)
    mac = hmac.new(key, struct.pack(">Q", int(t) // step), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF
    return f"{value % 10 ** digits:0{digits}d}"


def test_python_totp_matches_rfc6238():
    # The helper above is what the login tests will rely on: check it
    # against RFC 6238 appendix B first.
    seed = base64.b32encode(b"12345678901234567890").decode()
    assert totp_code(seed, 59, digits=8) == "94287082"
    assert totp_code(seed, 1111111109, digits=8) == "07081804"
    assert totp_code(seed, 20000000000, digits=8) == "65353130"


def parse_enroll(stdout):
    text = stdout.decode()
    m = re.search(r"^TOTP secret for (\S+): ([A-Z2-7]+)$", text, re.M)
    assert m, text
    uris = URI_RE.findall(text)
    assert len(uris) == 1, text
    return m.group(2), uris[0], text


def test_enroll_stores_secret_and_prints_uri(cli_site):
    cli_site.add_user("alice", "secret", extra="mail=maildir:/srv/a:x pop3=yes")
    (cli_site.root / "users").write_text("# site accounts\n" + users_text(cli_site) + "bob:{PLAIN}pw\n")
    p = run(cli_site, "totp", "enroll", "alice", "--no-qr")
    assert p.returncode == 0, p.stderr
    secret, uri, text = parse_enroll(p.stdout)
    assert "\u2580" not in text and "\u2584" not in text and "\u2588" not in text

    # 160 bits, base32 without padding.
    assert len(secret) == 32
    assert len(base64.b32decode(secret)) == 20

    u = urlsplit(uri)
    assert (u.scheme, u.netloc) == ("otpauth", "totp")
    assert unquote(u.path) == "/Postern:alice"
    q = parse_qs(u.query, strict_parsing=True)
    assert q == {
        "secret": [secret],
        "issuer": ["Postern"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
    assert uri == (
        f"otpauth://totp/Postern:alice?secret={secret}&issuer=Postern"
        "&algorithm=SHA1&digits=6&period=30"
    )

    # The line gains totp= and keeps its other fields; other lines stay.
    line = line_of(cli_site, "alice")
    assert line.startswith("alice:{PLAIN}secret:")
    assert extras(line) == ["mail=maildir:/srv/a:x", "pop3=yes", f"totp={secret}"]
    assert users_text(cli_site).startswith("# site accounts\n")
    assert line_of(cli_site, "bob") == "bob:{PLAIN}pw"
    # The secret gives codes like any other (and the file still loads).
    assert re.fullmatch(r"\d{6}", totp_code(secret, time.time()))
    p = run(cli_site, "check")
    assert p.returncode == 0, p.stderr


def test_enroll_twice_needs_force(cli_site):
    cli_site.add_user("alice", "secret")
    p = run(cli_site, "totp", "enroll", "alice", "--no-qr")
    assert p.returncode == 0, p.stderr
    first, _, _ = parse_enroll(p.stdout)
    before = users_text(cli_site)

    p = run(cli_site, "totp", "enroll", "alice", "--no-qr")
    assert p.returncode == 65
    assert b"enrolled already" in p.stderr and b"--force" in p.stderr
    assert p.stdout == b""
    assert users_text(cli_site) == before

    p = run(cli_site, "totp", "enroll", "--force", "alice", "--no-qr")
    assert p.returncode == 0, p.stderr
    second, _, _ = parse_enroll(p.stdout)
    assert second != first
    assert extras(line_of(cli_site, "alice")) == [f"totp={second}"]


def qr_modules(text):
    """The module matrix drawn by the half blocks (True = dark), with the
    quiet zone; each character is two rows, a drawn half a light module."""
    rows = [l for l in text.splitlines() if l and set(l) <= set(" \u2580\u2584\u2588")]
    assert rows, text
    width = len(rows[0])
    assert all(len(r) == width for r in rows)
    top = {" ": False, "\u2580": True, "\u2584": False, "\u2588": True}
    bottom = {" ": False, "\u2580": False, "\u2584": True, "\u2588": True}
    grid = []
    for r in rows:
        grid.append([not top[c] for c in r])
        grid.append([not bottom[c] for c in r])
    return grid, width


def test_enroll_draws_a_qr_code(cli_site):
    cli_site.add_user("alice", "secret")
    p = run(cli_site, "totp", "enroll", "alice")
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert "\033[" not in text  # colours only on a terminal
    grid, width = qr_modules(text)
    margin = 2
    size = width - 2 * margin
    assert size >= 21 and (size - 21) % 4 == 0, size  # a QR version's size
    # The last text line has a bottom half below the code (odd height).
    assert len(grid) == width + 1
    for y in range(width):
        for x in range(width):
            if x < margin or y < margin or x >= margin + size or y >= margin + size:
                assert not grid[y][x], f"dark module in the quiet zone at {x},{y}"

    def finder_at(ox, oy):
        for dy in range(7):
            for dx in range(7):
                ring = max(abs(dx - 3), abs(dy - 3))
                want = ring != 2  # dark 7x7 ring, light ring, dark 3x3 core
                assert grid[oy + dy][ox + dx] == want, (ox, oy, dx, dy)

    finder_at(margin, margin)
    finder_at(margin + size - 7, margin)
    finder_at(margin, margin + size - 7)


def test_enroll_percent_encodes_the_name(cli_site):
    cli_site.add_user("a.b+c@example.org", "secret")
    p = run(cli_site, "totp", "enroll", "a.b+c@example.org", "--no-qr")
    assert p.returncode == 0, p.stderr
    secret, uri, _ = parse_enroll(p.stdout)
    assert uri.startswith("otpauth://totp/Postern:a.b%2Bc%40example.org?secret=")
    assert extras(line_of(cli_site, "a.b+c@example.org")) == [f"totp={secret}"]


def test_disable_removes_only_totp(cli_site):
    cli_site.add_user("alice", "secret", extra="pop3=no totp=JBSWY3DPEHPK3PXPJBSWY3DP mail=maildir:/m")
    p = run(cli_site, "totp", "disable", "alice")
    assert p.returncode == 0, p.stderr
    assert extras(line_of(cli_site, "alice")) == ["pop3=no", "mail=maildir:/m"]
    before = users_text(cli_site)
    p = run(cli_site, "totp", "disable", "alice")
    assert p.returncode == 0 and b"nothing changed" in p.stdout
    assert users_text(cli_site) == before
    # With no extra field left, the line loses its empty trailing fields.
    cli_site.add_user("bob", "pw", extra="totp=JBSWY3DPEHPK3PXPJBSWY3DP")
    assert run(cli_site, "totp", "disable", "bob").returncode == 0
    assert line_of(cli_site, "bob") == "bob:{PLAIN}pw"


def test_user_mfa(cli_site):
    cli_site.add_user("alice", "secret", extra="pop3=yes")
    p = run(cli_site, "user", "mfa", "alice", "required")
    assert p.returncode == 0, p.stderr
    assert extras(line_of(cli_site, "alice")) == ["pop3=yes", "mfa=required"]
    assert b"warning" in p.stderr and b"no TOTP secret" in p.stderr

    # Setting it again does not duplicate it; with TOTP there is no warning.
    assert run(cli_site, "totp", "enroll", "alice", "--no-qr").returncode == 0
    p = run(cli_site, "user", "mfa", "alice", "required")
    assert p.returncode == 0 and p.stderr == b""
    fields = extras(line_of(cli_site, "alice"))
    assert fields.count("mfa=required") == 1 and fields[-1] == "mfa=required"
    assert run(cli_site, "check").returncode == 0

    # Disabling TOTP under mfa=required warns that the password alone no
    # longer logs in.
    p = run(cli_site, "totp", "disable", "alice")
    assert p.returncode == 0 and b"mfa=required" in p.stderr

    p = run(cli_site, "user", "mfa", "alice", "optional")
    assert p.returncode == 0, p.stderr
    assert extras(line_of(cli_site, "alice")) == ["pop3=yes"]

    before = users_text(cli_site)
    for args in (("alice",), ("alice", "maybe"), ("alice", "required", "x"), ()):
        p = run(cli_site, "user", "mfa", *args)
        assert p.returncode == 64, args
        assert b"usage: postern user mfa NAME required|optional" in p.stderr
    assert users_text(cli_site) == before


def test_unknown_user_and_usage_errors_leave_the_file(cli_site):
    cli_site.add_user("alice", "secret")
    before = users_text(cli_site)
    for args in (
        ("totp", "enroll", "nobody", "--no-qr"),
        ("totp", "disable", "nobody"),
        ("user", "mfa", "nobody", "required"),
        ("totp", "enroll", "alic", "--no-qr"),  # a prefix is not the account
    ):
        p = run(cli_site, *args)
        assert p.returncode == 67, (args, p.stderr)
        assert re.search(rb"no user \S+ in ", p.stderr), p.stderr
        assert p.stdout == b""
    for args in (
        ("totp",),
        ("totp", "enroll"),
        ("totp", "enroll", "alice", "--bogus"),
        ("totp", "enroll", "alice", "bob"),
        ("totp", "disable", "alice", "--force"),
        ("totp", "rotate", "alice"),
    ):
        p = run(cli_site, *args)
        assert p.returncode == 64, (args, p.stderr)
        assert b"usage: postern totp" in p.stderr
    assert users_text(cli_site) == before


def test_broken_line_is_not_edited(cli_site):
    (cli_site.root / "users").write_text("alice:{PLAIN}pw::::::mfa=sometimes\n")
    before = users_text(cli_site)
    p = run(cli_site, "totp", "enroll", "alice", "--no-qr")
    assert p.returncode == 65
    assert b"users:1: the line of alice cannot be used (mfa= must be required or optional)" in p.stderr
    assert users_text(cli_site) == before
