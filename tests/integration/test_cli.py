"""
The `postern` tool: accounts in the passwd-file and Maildir delivery,
checked through the real server where that is what matters.
"""

import base64
import hashlib
import hmac
import os
import stat
import subprocess
import threading

import pytest

from conftest import BUILD, to_wire

CLI = BUILD / "asan" / "postern"


def run(site, *args, stdin=b"", env_extra=None, wrap=()):
    if not CLI.exists():
        pytest.skip(f"{CLI} not built")
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.update(env_extra or {})
    p = subprocess.run(
        [*wrap, str(CLI), "-c", str(site.root / "postern.conf"), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        env=env,
    )
    for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error"):
        assert marker not in p.stderr.decode(errors="replace"), p.stderr.decode()
    return p


@pytest.fixture
def cli_site(site):
    site.write_config(1)  # the CLI never listens; any port will do
    return site


def users_text(site):
    return (site.root / "users").read_text()


def test_user_add_stores_yescrypt_and_server_accepts_it(cli_site, start_server):
    p = run(cli_site, "user", "add", "carol", stdin=b"correct horse battery\n")
    assert p.returncode == 0, p.stderr
    line = [l for l in users_text(cli_site).splitlines() if l.startswith("carol:")][0]
    assert line.startswith("carol:{CRYPT}$y$"), line
    assert "correct horse" not in users_text(cli_site)
    srv = start_server()
    c = srv.client()
    c.login("carol", "correct horse battery")
    c.quit()
    c = srv.client()
    c.ok("USER carol")
    assert c.cmd("PASS correct horse").startswith("-ERR [AUTH]")


def test_user_add_refuses_duplicates_bad_names_and_weak_passwords(cli_site):
    assert run(cli_site, "user", "add", "dave", stdin=b"long enough pw\n").returncode == 0
    before = users_text(cli_site)
    p = run(cli_site, "user", "add", "dave", stdin=b"another long pw\n")
    assert p.returncode == 65 and b"exists" in p.stderr
    p = run(cli_site, "user", "add", "eve", stdin=b"short\n")
    assert p.returncode == 65 and b"shorter than 12" in p.stderr
    p = run(cli_site, "user", "add", "frank", stdin=b"frank\n")
    assert p.returncode == 65
    p = run(cli_site, "user", "add", "frank", stdin=b"")
    assert p.returncode == 65 and b"no password" in p.stderr
    for bad in ("../x", "a:b", "a b", ".hidden", "-opt", ""):
        p = run(cli_site, "user", "add", bad, stdin=b"long enough pw\n")
        assert p.returncode in (64, 65), (bad, p.stderr)
    assert users_text(cli_site) == before


def test_passwd_del_disable_enable_keep_other_lines(cli_site, start_server):
    (cli_site.root / "users").write_text(
        "# accounts of the test site\n"
        "alice:{PLAIN}secret:1000:1000::/home/alice::mail=maildir:mail/alice/Maildir\n"
        "\n"
        "broken line without password\n"
    )
    os.chmod(cli_site.root / "users", 0o640)
    assert run(cli_site, "user", "add", "gina", stdin=b"first password\n").returncode == 0
    text = users_text(cli_site)
    assert text.startswith("# accounts of the test site\nalice:{PLAIN}secret:1000:1000::/home/alice::")
    assert "broken line without password\n" in text
    assert stat.S_IMODE(os.stat(cli_site.root / "users").st_mode) == 0o640

    srv = start_server()
    assert run(cli_site, "user", "passwd", "gina", stdin=b"second password\n").returncode == 0
    c = srv.client()
    c.ok("USER gina")
    assert c.cmd("PASS first password").startswith("-ERR [AUTH]")
    c.login("gina", "second password")
    c.quit()

    assert run(cli_site, "user", "disable", "alice").returncode == 0
    line = [l for l in users_text(cli_site).splitlines() if l.startswith("alice:")][0]
    assert line == "alice:{PLAIN}secret:1000:1000::/home/alice::mail=maildir:mail/alice/Maildir pop3=no"
    c = srv.client()
    c.ok("USER alice")
    r = c.cmd("PASS secret")
    assert r.startswith("-ERR [AUTH]") and "disabled" in r
    c.close()
    listing = run(cli_site, "user", "list").stdout.decode()
    assert any(l.split()[:3] == ["alice", "PLAIN", "disabled"] for l in listing.splitlines())
    assert any(l.split()[:3] == ["gina", "CRYPT", "enabled"] for l in listing.splitlines())

    assert run(cli_site, "user", "enable", "alice").returncode == 0
    line = [l for l in users_text(cli_site).splitlines() if l.startswith("alice:")][0]
    assert line == "alice:{PLAIN}secret:1000:1000::/home/alice::mail=maildir:mail/alice/Maildir"
    c = srv.client()
    c.login("alice", "secret")
    c.quit()

    p = run(cli_site, "user", "del", "gina")
    assert p.returncode == 0
    assert "gina" not in users_text(cli_site)
    assert "# accounts of the test site" in users_text(cli_site)
    assert run(cli_site, "user", "del", "gina").returncode == 67
    assert run(cli_site, "user", "passwd", "nobody", stdin=b"long enough pw\n").returncode == 67


def test_concurrent_adds_all_land(cli_site):
    """The lock serialises writers: no add is lost to a lost update."""
    names = [f"user{i}" for i in range(12)]
    results = {}

    def add(n):
        results[n] = run(cli_site, "user", "add", n, stdin=b"a long password\n").returncode

    threads = [threading.Thread(target=add, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(results[n] == 0 for n in names), results
    lines = users_text(cli_site).splitlines()
    assert sorted(l.split(":")[0] for l in lines) == sorted(names)


def test_deliver_is_atomic_and_sized(cli_site, start_server):
    cli_site.add_user("alice", "secret")
    msg = b"Subject: cli\n\nline one\n.dot line\nno newline at end"
    p = run(cli_site, "deliver", "alice", stdin=msg)
    assert p.returncode == 0, p.stderr
    md = cli_site.maildir("alice")
    assert os.listdir(md / "tmp") == []
    (name,) = os.listdir(md / "new")
    assert name.endswith(f",S={len(msg)},W={len(to_wire(msg))}")
    assert (md / "new" / name).read_bytes() == msg

    srv = start_server()
    c = srv.client()
    c.login("alice", "secret")
    assert c.listing() == {1: len(to_wire(msg))}
    assert c.retr(1) == to_wire(msg)
    c.quit()


def test_deliver_creates_the_maildir_and_reports_unknown_users(cli_site):
    cli_site.add_user("henry", "secret")
    md = cli_site.root / "mail" / "henry" / "Maildir"
    for sub in ("new", "cur", "tmp"):
        os.rmdir(md / sub)
    os.rmdir(md)
    assert run(cli_site, "deliver", "henry", stdin=b"Subject: x\n\ny\n").returncode == 0
    assert len(os.listdir(md / "new")) == 1
    p = run(cli_site, "deliver", "nobody", stdin=b"x\n")
    assert p.returncode == 67 and b"no user nobody" in p.stderr
    assert run(cli_site, "deliver").returncode == 64


def test_deliver_many_messages_unique_names(cli_site):
    cli_site.add_user("ivy", "secret")
    for i in range(30):
        assert run(cli_site, "deliver", "ivy", stdin=b"Subject: %d\n\n" % i).returncode == 0
    assert len(os.listdir(cli_site.maildir("ivy") / "new")) == 30


def test_check(cli_site):
    cli_site.add_user("alice", "secret")
    p = run(cli_site, "check")
    assert p.returncode == 0 and b"OK" in p.stdout
    with open(cli_site.root / "users", "a") as f:
        f.write("mallory:{NOSUCH}x\n")
    p = run(cli_site, "check")
    assert p.returncode == 78
    assert b"users:2: unknown password scheme" in p.stderr
    conf = cli_site.root / "postern.conf"
    conf.write_text(conf.read_text().replace("[guard]", "[guard]\nbogus = 1"))
    p = run(cli_site, "check")
    assert p.returncode == 78
    assert b"[guard] bogus: unknown key" in p.stderr


def test_usage_errors(cli_site):
    assert run(cli_site).returncode == 64
    assert run(cli_site, "frobnicate").returncode == 64
    assert run(cli_site, "user", "add").returncode == 64
    assert run(cli_site, "user", "list", "extra").returncode == 64
    assert run(cli_site, "user", "add", "x", "y", stdin=b"long enough pw\n").returncode == 64
    assert run(cli_site, "user", "add", "x", "--bogus", stdin=b"long enough pw\n").returncode == 64
    assert run(cli_site, "user", "add", "x", "--scheme").returncode == 64
    assert run(cli_site, "user", "del", "x", "--scram").returncode == 64


def test_check_loads_the_tls_certificate(cli_site):
    cli_site.add_user("alice", "secret")
    tls = cli_site.root / "tls"
    tls.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "30", "-subj", "/CN=localhost", "-keyout", str(tls / "key.pem"),
         "-out", str(tls / "cert.pem")],
        check=True, capture_output=True, timeout=60)
    conf = cli_site.root / "postern.conf"
    base = conf.read_text()
    conf.write_text(base + "[tls]\ncert = tls/cert.pem\nkey = tls/key.pem\n")
    p = run(cli_site, "check")
    assert p.returncode == 0, p.stderr
    (tls / "broken.pem").write_text("not a certificate\n")
    conf.write_text(base + "[tls]\ncert = tls/broken.pem\nkey = tls/key.pem\n")
    p = run(cli_site, "check")
    assert p.returncode == 78
    assert b"[tls] cert: cannot load certificate" in p.stderr, p.stderr


# --- password schemes, SCRAM keys and the password policy ---

SCHEMES = {
    "yescrypt": "{CRYPT}$y$",
    "sha512-crypt": "{SHA512-CRYPT}$6$",
    "blf-crypt": "{BLF-CRYPT}$2y$10$",
    "argon2id": "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$",
    "scram-sha-256": "{SCRAM-SHA-256}10000,",
    "plain": "{PLAIN}",
}


def user_line(site, name):
    return [l for l in users_text(site).splitlines() if l.split(":")[0] == name][0]


def scram_field(line):
    extra = line.split(":", 7)[7] if line.count(":") >= 7 else ""
    found = [f[len("scram="):] for f in extra.split(" ") if f.startswith("scram=")]
    assert len(found) <= 1, line
    return found[0] if found else None


def scram_keys_match(value, password):
    """True when Dovecot-format SCRAM-SHA-256 keys belong to password
    (RFC 5802: SaltedPassword, ClientKey, StoredKey, ServerKey)."""
    assert value.startswith("{SCRAM-SHA-256}"), value
    it, salt, stored, server = value[len("{SCRAM-SHA-256}"):].split(",")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(it))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return (base64.b64decode(stored) == hashlib.sha256(client_key).digest()
            and base64.b64decode(server) == server_key)


def test_scheme_each_value_stores_and_logs_in(cli_site, start_server):
    passwords = {}
    for i, (scheme, prefix) in enumerate(SCHEMES.items()):
        name, pw = f"s{i}", f"Quiet meadow {i} {scheme}"
        args = ["user", "add", name, "--scheme", scheme] if i % 2 else \
               ["user", "add", f"--scheme={scheme.upper()}", name]
        p = run(cli_site, *args, stdin=pw.encode() + b"\n")
        assert p.returncode == 0, (scheme, p.stderr)
        line = user_line(cli_site, name)
        assert line.startswith(f"{name}:{prefix}"), line
        assert scram_field(line) is None
        if scheme == "plain":
            assert line == f"{name}:{{PLAIN}}{pw}"
            assert b"warning" in p.stderr and b"PLAIN" in p.stderr
        else:
            assert pw not in users_text(cli_site)
            assert p.stderr == b""
        if scheme == "scram-sha-256":
            assert scram_keys_match(line.split(":")[1], pw)
        passwords[name] = pw
    listing = run(cli_site, "user", "list").stdout.decode().splitlines()
    got = {l.split()[0]: l.split()[1] for l in listing}
    assert got == {"s0": "CRYPT", "s1": "CRYPT", "s2": "CRYPT", "s3": "ARGON2ID",
                   "s4": "SCRAM-SHA-256", "s5": "PLAIN"}
    # The server takes every one of them with USER/PASS, and only the right password.
    srv = start_server()
    for name, pw in passwords.items():
        c = srv.client()
        c.login(name, pw)
        c.quit()
        c = srv.client()
        c.ok(f"USER {name}")
        assert c.cmd(f"PASS {pw}x").startswith("-ERR [AUTH]"), name
        c.close()


def test_unknown_scheme_and_plain_colon_refused(cli_site):
    p = run(cli_site, "user", "add", "kim", "--scheme", "md5-crypt", stdin=b"Quiet meadow 42\n")
    assert p.returncode == 64
    assert b"unknown scheme \"md5-crypt\"" in p.stderr and b"argon2id" in p.stderr
    p = run(cli_site, "user", "add", "kim", "--scheme", "plain", stdin=b"Quiet:meadow:42\n")
    assert p.returncode == 65 and b"cannot contain ':'" in p.stderr
    assert "kim" not in users_text(cli_site)


def test_scram_option_writes_the_field(cli_site, start_server):
    pw = "Velvet thunder 77"
    p = run(cli_site, "user", "add", "liz", "--scram", stdin=pw.encode() + b"\n")
    assert p.returncode == 0, p.stderr
    line = user_line(cli_site, "liz")
    assert line.startswith("liz:{CRYPT}$y$") and "::::::scram={SCRAM-SHA-256}10000," in line, line
    keys = scram_field(line)
    salt = base64.b64decode(keys.split(",")[1])
    assert len(salt) == 16
    assert scram_keys_match(keys, pw)
    assert not scram_keys_match(keys, pw + "x")
    # With another scheme too; and the file still reads for the server.
    p = run(cli_site, "user", "add", "max", "--scram", "--scheme", "argon2id",
            stdin=b"Velvet thunder 78\n")
    assert p.returncode == 0, p.stderr
    line = user_line(cli_site, "max")
    assert line.startswith("max:{ARGON2ID}$argon2id$") and scram_keys_match(scram_field(line),
                                                                            "Velvet thunder 78")
    listing = run(cli_site, "user", "list").stdout.decode()
    assert any(l.split() == ["liz", "CRYPT", "enabled", "scram"] for l in listing.splitlines())
    assert run(cli_site, "check").returncode == 0
    srv = start_server()
    c = srv.client()
    c.login("liz", pw)
    c.quit()


def test_policy_refusals_say_why(cli_site):
    cases = [
        (b"Short one\n", b"shorter than 12 characters"),
        (b"understanding\n", b"dictionary word"),
        (b"Responsibilities\n", b"dictionary word"),
        (b"xx-nina-nina-xx\n", b"user name"),
        # Words that cracklib passes once digits or symbols are added.
        (b"Password2024!\n", b"weak word with digits or symbols added: The password fails the dictionary check"),
        (b"p@ssw0rd1234\n", b"weak word with digits or symbols added"),
        (b"2025!Welcome\n", b"weak word with digits or symbols added"),
        # Symbols beyond ASCII are symbols too (UTF-8, whatever the locale).
        ("Password2024\u20ac\n".encode(), b"weak word with digits or symbols added"),
        ("\u00a7Sunshine2024\n".encode(), b"weak word with digits or symbols added"),
    ]
    for stdin, why in cases:
        p = run(cli_site, "user", "add", "nina", stdin=stdin)
        assert p.returncode == 65, (stdin, p.stderr)
        assert b"password refused: " in p.stderr and why in p.stderr, (stdin, p.stderr)
    assert "nina" not in users_text(cli_site)
    # Padding beyond what guessing rules add, or none, is judged as a whole.
    for ok in (b"Password#83910472!\n", b"73!kq#9158!04\n",
               "Kaffeetasse\u20ac\u20ac\u20ac\u20ac\u20ac\u20ac\u20ac\n".encode()):
        p = run(cli_site, "user", "add", "nina", stdin=ok)
        assert p.returncode == 0, (ok, p.stderr)
        assert run(cli_site, "user", "del", "nina").returncode == 0
    # The same policy for passwd; a refused change leaves the line as it was.
    assert run(cli_site, "user", "add", "nina", stdin=b"Copper kettle 19\n").returncode == 0
    before = users_text(cli_site)
    for stdin, why in cases:
        p = run(cli_site, "user", "passwd", "nina", stdin=stdin)
        assert p.returncode == 65 and why in p.stderr, (stdin, p.stderr)
    assert users_text(cli_site) == before


# Runs a command (after the file named next) with that file as the site's
# /etc/security/pwquality.conf: bind-mounted in a mount namespace of the
# command's own, so the machine's file is never touched.
SITE_POLICY = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind "$0" /etc/security/pwquality.conf && exec "$@"')


def test_policy_word_check_uses_the_sites_dictionary(cli_site, tmp_path):
    """The dictpath of the site's pwquality.conf reaches the check of the
    word inside a padded password, not only the check of the whole."""
    if (os.geteuid() != 0 or not os.path.exists("/etc/security/pwquality.conf")
            or subprocess.run([*SITE_POLICY[:4], "true"]).returncode != 0):
        pytest.skip("needs root and a mount namespace of its own")
    words = tmp_path / "site-words"
    subprocess.run(["cracklib-packer", str(words)], input=b"zebracorn\n", check=True,
                   capture_output=True)
    conf = tmp_path / "pwquality.conf"
    conf.write_text(f"dictpath = {words}\n")
    # Not a word of the system's dictionary: accepted as it stands ...
    p = run(cli_site, "user", "add", "zed", stdin=b"Zebracorn2024!\n")
    assert p.returncode == 0, p.stderr
    assert run(cli_site, "user", "del", "zed").returncode == 0
    # ... but a word of the site's: cracklib passes the whole, the word
    # inside it is refused.
    p = run(cli_site, "user", "add", "zed", stdin=b"Zebracorn2024!\n", wrap=(*SITE_POLICY, str(conf)))
    assert p.returncode == 65, p.stderr
    assert b"weak word with digits or symbols added" in p.stderr, p.stderr
    assert "zed" not in users_text(cli_site)


def test_passwd_regenerates_scram(cli_site, start_server):
    assert run(cli_site, "user", "add", "oscar", "--scram",
               stdin=b"Amber lantern 01\n").returncode == 0
    assert run(cli_site, "user", "disable", "oscar").returncode == 0
    old = scram_field(user_line(cli_site, "oscar"))

    # No option: the keys follow the password (old keys would keep the old one working).
    assert run(cli_site, "user", "passwd", "oscar", stdin=b"Amber lantern 02\n").returncode == 0
    line = user_line(cli_site, "oscar")
    new = scram_field(line)
    assert new is not None and new != old
    assert scram_keys_match(new, "Amber lantern 02") and not scram_keys_match(new, "Amber lantern 01")
    assert line.split(":", 7)[7] == "pop3=no scram=" + new, line
    assert line.startswith("oscar:{CRYPT}$y$")

    # --no-scram removes them, other extra fields stay.
    assert run(cli_site, "user", "passwd", "oscar", "--no-scram",
               stdin=b"Amber lantern 03\n").returncode == 0
    line = user_line(cli_site, "oscar")
    assert scram_field(line) is None and line.endswith("::::::pop3=no"), line
    # Without keys, passwd adds none ...
    assert run(cli_site, "user", "passwd", "oscar", stdin=b"Amber lantern 04\n").returncode == 0
    assert scram_field(user_line(cli_site, "oscar")) is None
    # ... unless asked.
    assert run(cli_site, "user", "passwd", "oscar", "--scram", "--scheme", "sha512-crypt",
               stdin=b"Amber lantern 05\n").returncode == 0
    line = user_line(cli_site, "oscar")
    assert line.startswith("oscar:{SHA512-CRYPT}$6$")
    assert scram_keys_match(scram_field(line), "Amber lantern 05")

    # Keys as the password itself: no second copy; the next passwd keeps SCRAM working.
    assert run(cli_site, "user", "passwd", "oscar", "--scheme", "scram-sha-256",
               stdin=b"Amber lantern 06\n").returncode == 0
    line = user_line(cli_site, "oscar")
    assert scram_field(line) is None and scram_keys_match(line.split(":")[1], "Amber lantern 06")
    assert run(cli_site, "user", "passwd", "oscar", stdin=b"Amber lantern 07\n").returncode == 0
    line = user_line(cli_site, "oscar")
    assert line.startswith("oscar:{CRYPT}$y$")
    assert scram_keys_match(scram_field(line), "Amber lantern 07")

    assert run(cli_site, "user", "enable", "oscar").returncode == 0
    srv = start_server()
    c = srv.client()
    c.ok("USER oscar")
    assert c.cmd("PASS Amber lantern 06").startswith("-ERR [AUTH]")
    c.login("oscar", "Amber lantern 07")
    c.quit()
