"""
The `postern` tool: accounts in the passwd-file and Maildir delivery,
checked through the real server where that is what matters.
"""

import os
import stat
import subprocess
import threading

import pytest

from conftest import ASAN_BIN, BUILD, CRLF, to_wire

CLI = BUILD / "asan" / "postern"


def run(site, *args, stdin=b"", env_extra=None):
    if not CLI.exists():
        pytest.skip(f"{CLI} not built")
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.update(env_extra or {})
    p = subprocess.run(
        [str(CLI), "-c", str(site.root / "postern.conf"), *args],
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
    assert p.returncode == 65 and b"shorter than 8" in p.stderr
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
