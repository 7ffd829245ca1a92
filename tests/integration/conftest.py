"""
Fixtures and helpers for the posternd integration suite.

Every test gets a fresh site (a temporary folder with a configuration, a
passwd-file and Maildirs) and starts its own server(s) through the
``start_server`` factory. Servers listen on 127.0.0.1 and ::1 only, on free
ports, and are always stopped at teardown; teardown also checks that a
server the test did not stop itself is still alive, that it exits cleanly on
SIGTERM, and that its stderr holds no sanitizer report.

By default the ASan/UBSan build ($POSTERN_BUILD/asan/posternd) is used; the
memory tests use the release build ($POSTERN_BUILD/posternd).
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("POSTERN_BUILD", str(REPO / "build"))).resolve()
ASAN_BIN = BUILD / "asan" / "posternd"
RELEASE_BIN = BUILD / "posternd"

CRLF = b"\r\n"
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error", "ThreadSanitizer")


def _have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAVE_IPV6 = _have_ipv6()
needs_ipv6 = pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback (::1)")


def free_port():
    """A port free on 127.0.0.1 (and on ::1 when there is IPv6)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s4:
            s4.bind(("127.0.0.1", 0))
            port = s4.getsockname()[1]
            if not HAVE_IPV6:
                return port
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
                    s6.bind(("::1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Polls pred() until it is true; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Message helpers
# --------------------------------------------------------------------------

def to_wire(data: bytes) -> bytes:
    """What RETR must deliver (after the client removes dot-stuffing): every
    bare LF becomes CRLF, CRLF stays, a bare CR is content, and a last line
    without newline is ended with CRLF."""
    out = re.sub(rb"(?<!\r)\n", b"\r\n", data)
    if out and not out.endswith(b"\n"):
        out += CRLF
    return out


def unstuff(stuffed_with_leading_crlf: bytes) -> bytes:
    return stuffed_with_leading_crlf.replace(b"\r\n..", b"\r\n.")[2:]


UIDL_RE = re.compile(rb"^[\x21-\x7e]{1,70}$")
DIGEST_RE = re.compile(r"^[0-9a-f]{32}$")


# --------------------------------------------------------------------------
# Audit log (logfmt) parsing
# --------------------------------------------------------------------------

_TOKEN = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"=\\]+)(?= |$)')


def _unquote(v):
    if not v.startswith('"'):
        return v
    v = v[1:-1]
    out = []
    i = 0
    while i < len(v):
        c = v[i]
        if c == "\\":
            n = v[i + 1]
            if n == "x":
                out.append(chr(int(v[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append(n)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_logfmt(line):
    """Parses one audit line strictly: every byte belongs to a key=value
    token, keys are unique. Raises ValueError otherwise."""
    if re.search(r"[^\x20-\x7e]", line):
        raise ValueError(f"control or non-ASCII character in audit line: {line!r}")
    fields = {}
    pos = 0
    while pos < len(line):
        m = _TOKEN.match(line, pos)
        if m is None:
            raise ValueError(f"not logfmt at offset {pos}: {line!r}")
        key = m.group(1)
        if key in fields:
            raise ValueError(f"duplicate key {key!r}: {line!r}")
        fields[key] = _unquote(m.group(2))
        pos = m.end()
        if pos < len(line):
            if line[pos] != " ":
                raise ValueError(f"junk after token at {pos}: {line!r}")
            pos += 1
    return fields


# --------------------------------------------------------------------------
# Site: configuration, users, Maildirs
# --------------------------------------------------------------------------

DEFAULT_CONFIG = {
    "server": {"listen": None, "threads": "2", "state_dir": "state"},
    # TLS is required by default; the tests of plain POP3 run on loopback,
    # which this exempts. tests/integration/test_tls.py turns it off.
    "auth": {"passdb": "passwd-file:users", "apop": "no", "allow_plaintext_loopback": "yes"},
    "mail": {"location": "maildir:mail/%u/Maildir"},
    "limits": {
        "login_timeout": "60",
        "idle_timeout": "600",
        "max_connections": "10000",
        "max_connections_per_ip": "20",
        "max_line": "8192",
    },
    # The tests of other features make many failures and bad commands from
    # 127.0.0.1 on purpose; tests/integration/test_guard.py turns the
    # defence on.
    "guard": {"failure_delay": "0", "max_preauth_per_ip": "1000",
              "max_auth_failures": "100", "max_bad_commands": "0", "ban_after": "0",
              "account_failures": "0"},
    "log": {"audit": "audit.log"},
}

_name_counter = [0]


class Site:
    """A server's folder: postern.conf, users, mail/USER/Maildir."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.users = {}
        self.passwords = {}
        self.write_users()

    # -- accounts --
    def add_user(self, name, password="secret", scheme="PLAIN", hashed=None, extra=""):
        if hashed is None:
            assert scheme == "PLAIN"
            hashed = password
        line = f"{name}:{{{scheme}}}{hashed}"
        if extra:
            line += "::::::" + extra
        self.users[name] = line
        self.passwords[name] = password
        self.write_users()
        self.maildir(name)
        return name

    def write_users(self):
        text = "".join(line + "\n" for line in self.users.values())
        tmp = self.root / "users.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.root / "users")

    # -- Maildirs --
    def maildir(self, user) -> Path:
        md = self.root / "mail" / user / "Maildir"
        for sub in ("new", "cur", "tmp"):
            (md / sub).mkdir(parents=True, exist_ok=True)
        return md

    def new_name(self):
        _name_counter[0] += 1
        n = _name_counter[0]
        return f"{1700000000 + n}.M{n}P{os.getpid()}.testhost"

    def deliver(self, user, data: bytes, sub="new", name=None, flags=None) -> Path:
        """Drops a message into new/ or cur/ the way an MDA does: written
        in tmp/, then renamed. name may be str or bytes. Returns the path."""
        md = os.fsencode(self.maildir(user))
        base = os.fsencode(name if name is not None else self.new_name())
        final = base if flags is None else base + b":2," + os.fsencode(flags)
        tmp = os.path.join(md, b"tmp", base)
        with open(tmp, "wb") as f:
            f.write(data)
        dest = os.path.join(md, os.fsencode(sub), final)
        os.rename(tmp, dest)
        return Path(os.fsdecode(dest))

    def message_files(self, user):
        """{base name: path} for every message file in new/ and cur/."""
        md = self.maildir(user)
        out = {}
        for sub in ("new", "cur"):
            for entry in os.listdir(os.fsencode(md / sub)):
                base = entry.split(b":", 1)[0]
                out[os.fsdecode(base)] = Path(os.fsdecode(os.path.join(os.fsencode(md / sub), entry)))
        return out

    # -- configuration --
    def write_config(self, port, overrides=None, raw=None, name="postern.conf"):
        path = self.root / name
        if raw is not None:
            path.write_text(raw)
            return path
        conf = {s: dict(kv) for s, kv in DEFAULT_CONFIG.items()}
        conf["server"]["listen"] = (
            f"127.0.0.1:{port}, [::1]:{port}" if HAVE_IPV6 else f"127.0.0.1:{port}"
        )
        for key, value in (overrides or {}).items():
            if "." in key:
                section, key = key.split(".", 1)
            else:
                section = next((s for s, kv in conf.items() if key in kv), None)
                assert section is not None, f"unknown config key {key}"
            conf.setdefault(section, {})[key] = str(value)
        lines = []
        for section, kv in conf.items():
            lines.append(f"[{section}]")
            for key, value in kv.items():
                lines.append(f"{key} = {value}")
            lines.append("")
        path.write_text("\n".join(lines))
        return path


# --------------------------------------------------------------------------
# Server process
# --------------------------------------------------------------------------

class Server:
    def __init__(self, site: Site, binary: Path, overrides=None, tag="srv"):
        self.site = site
        self.binary = Path(binary)
        self.overrides = dict(overrides or {})
        self.port = free_port()
        self.tag = tag
        self.proc = None
        self.stopped_by_test = False
        self.returncode = None
        self.stderr_path = site.root / f"{tag}.stderr"
        self.audit_path = site.root / "audit.log"

    def start(self, timeout=15):
        if not self.binary.exists():
            pytest.skip(f"{self.binary} not built (make all asan)")
        conf = self.site.write_config(self.port, self.overrides)
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "-c", str(conf), "-f"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            cwd=str(self.site.root),
            env=env,
        )

        def ready():
            if self.proc.poll() is not None:
                pytest.fail(f"posternd exited with {self.proc.returncode}:\n{self.stderr_text()}")
            return "ready:" in self.stderr_text()

        wait_until(ready, timeout, what="posternd to become ready")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def audit_text(self):
        try:
            return self.audit_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def audit_events(self):
        # Split on LF only: a CR or other control byte inside a line is a
        # parse error, as it would be for a log reader.
        # A line being written right now may be cut short: leave it out.
        return [parse_logfmt(line) for line in self.audit_text().split("\n")[:-1]]

    def wait_audit(self, pred, timeout=10, what="audit line"):
        """Waits for an audit event matching pred(fields) and returns it."""

        def find():
            for ev in self.audit_events():
                if pred(ev):
                    return ev
            return None

        return wait_until(find, timeout, what=what)

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops the server (if running) and returns its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.returncode = "hung"
        if self.returncode is None:
            self.returncode = self.proc.returncode
        self._err.close()
        return self.returncode

    def sanitizer_report(self):
        text = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                return text
        return None

    def client(self, **kw):
        return Client(self.port, **kw)

    def url(self, path="", host="127.0.0.1"):
        return f"pop3://{host}:{self.port}/{path}"


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path / "site")


@pytest.fixture
def start_server(site):
    """Factory: start_server(binary=ASAN_BIN, **config_overrides) -> Server."""
    servers = []

    def start(binary=ASAN_BIN, tag=None, **overrides):
        srv = Server(site, binary, overrides, tag=tag or f"srv{len(servers)}")
        servers.append(srv)
        return srv.start()

    yield start

    problems = []
    for srv in servers:
        if srv.proc is None:
            continue
        if not srv.stopped_by_test and not srv.alive():
            problems.append(f"{srv.tag}: posternd died (status {srv.proc.returncode})")
        was_running = srv.alive()
        rc = srv.stop()
        if was_running and rc != 0:
            problems.append(f"{srv.tag}: exit status {rc} after SIGTERM")
        report = srv.sanitizer_report()
        if report:
            problems.append(f"{srv.tag}: sanitizer report:\n{report[-6000:]}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def server(site, start_server):
    """An ASan server with alice/secret and bob/hunter2, empty Maildirs."""
    site.add_user("alice", "secret")
    site.add_user("bob", "hunter2")
    return start_server()


# --------------------------------------------------------------------------
# Raw POP3 client
# --------------------------------------------------------------------------

class Client:
    """A POP3 client on a raw socket: exact bytes, explicit timeouts."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, greeting=True, rcvbuf=None,
                 source=None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if source is not None:
            # Another loopback address (127.0.0.x): another client network.
            self.sock.bind((source, 0))
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.greeting = self.readline().decode("latin-1") if greeting else None

    # -- low level --
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            self.eof = True
            raise EOFError("connection closed by server")
        self.buf += chunk

    def readline(self, timeout=None):
        """One line without its CRLF (bytes). EOFError if the server closed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no complete line")
            self._fill(left)

    def read_multiline(self, timeout=None):
        """The body of a multi-line answer, un-stuffed, with CRLFs (the
        octets the message had before dot-stuffing). Also checks that no
        line in the body starts with a single dot."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        acc = bytearray(b"\r\n")
        acc += self.buf
        self.buf = bytearray()
        scan = 0
        while True:
            i = acc.find(b"\r\n.\r\n", scan)
            if i >= 0:
                break
            scan = max(0, len(acc) - 4)
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("multi-line answer not terminated")
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                self.eof = True
                raise EOFError("connection closed inside a multi-line answer")
            acc += chunk
        self.buf = bytearray(acc[i + 5:])
        stuffed = bytes(acc[: i + 2])
        del acc
        bad = re.search(rb"\r\n\.(?!\.)", stuffed)
        assert bad is None, f"unstuffed dot line at {bad.start()}"
        return stuffed.replace(b"\r\n..", b"\r\n.")[2:]

    # -- POP3 level --
    def cmd(self, line, timeout=None):
        """Sends one command; returns the status line (str)."""
        self.send(line + "\r\n" if isinstance(line, str) else line + CRLF)
        return self.readline(timeout).decode("latin-1")

    def ok(self, line, timeout=None):
        r = self.cmd(line, timeout)
        assert r.startswith("+OK"), f"{line!r} -> {r!r}"
        return r

    def err(self, line, timeout=None):
        r = self.cmd(line, timeout)
        assert r.startswith("-ERR"), f"{line!r} -> {r!r}"
        return r

    def multi(self, line, timeout=None):
        """Sends a command with a multi-line answer; returns (status, body)."""
        r = self.ok(line, timeout)
        return r, self.read_multiline(timeout)

    def login(self, user, password):
        self.ok(f"USER {user}")
        return self.ok(f"PASS {password}")

    def retr(self, n, timeout=None):
        return self.multi(f"RETR {n}", timeout)[1]

    def listing(self, kind="LIST"):
        """{msg number: size or uid} from LIST or UIDL."""
        _, body = self.multi(kind)
        out = {}
        for line in body.split(CRLF)[:-1]:
            num, value = line.split(b" ", 1)
            out[int(num)] = int(value) if kind == "LIST" else value.decode("latin-1")
        return out

    def stat(self):
        r = self.ok("STAT").split()
        return int(r[1]), int(r[2])

    def quit(self):
        r = self.cmd("QUIT")
        self.wait_closed()
        return r

    def wait_closed(self, timeout=None):
        """Reads until the server closes; returns what came (bytes)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        got = bytes(self.buf)
        self.buf = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("server did not close the connection")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        self.eof = True
        return got

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Ends the connection with a TCP RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def login_when_free(srv, user, password, timeout=10):
    """Logs in, retrying while the mailbox is still [IN-USE] (the server
    notices a dropped connection asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        c = srv.client()
        c.ok(f"USER {user}")
        r = c.cmd(f"PASS {password}")
        if r.startswith("+OK"):
            return c
        c.close()
        assert "[IN-USE]" in r, r
        if time.monotonic() > deadline:
            pytest.fail(f"mailbox of {user} still in use after {timeout}s")
        time.sleep(0.05)


# --------------------------------------------------------------------------
# curl
# --------------------------------------------------------------------------

CURL = "/usr/bin/curl" if os.path.exists("/usr/bin/curl") else None
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl not installed")


def curl(*args, timeout=30, check=True):
    """Runs curl; returns CompletedProcess (stdout bytes)."""
    cmd = [CURL, "-sS", "--max-time", str(timeout), *args]
    p = subprocess.run(cmd, capture_output=True, timeout=timeout + 10)
    if check:
        assert p.returncode == 0, f"{cmd}: rc={p.returncode} {p.stderr.decode(errors='replace')}"
    return p


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every interval seconds."""

    def __init__(self, pid, interval=0.05):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.samples.append(int(line.split()[1]))
            except OSError:
                return
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join(5)
        return max(self.samples) if self.samples else 0


def run_posternd_conf(site, text, name="postern.conf"):
    """Writes text as SITE/name and runs posternd on it in the foreground,
    for a configuration that must stop it at start-up; returns (exit
    status, stderr, the file's path)."""
    if not ASAN_BIN.exists():
        pytest.skip(f"{ASAN_BIN} not built")
    path = site.root / name
    path.write_text(text)
    p = subprocess.run([str(ASAN_BIN), "-c", str(path), "-f"], capture_output=True,
                       timeout=20, cwd=str(site.root), stdin=subprocess.DEVNULL)
    err = p.stderr.decode(errors="replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err
    return p.returncode, err, path
