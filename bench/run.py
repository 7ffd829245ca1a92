#!/usr/bin/python3
"""Side-by-side benchmark of Postern and Dovecot on loopback (issue 4).

`make bench` runs this with Debian's /usr/bin/python3 (standard library only).

  - builds the data under bench/work/ (kept between runs; --fresh rebuilds):
    accounts (PLAIN, SHA512-CRYPT, yescrypt) in one passwd-file, and Maildirs
    owned by the system user `postbench`, shared by both servers;
  - starts Postern (build/posternd), Dovecot tuned (bench/dovecot-tuned.conf,
    auth cache on and off) and Dovecot default (bench/dovecot-default.conf) on
    127.0.0.1, each with its own base_dir under bench/work/; for the tls-ecdsa
    rows, Postern and Dovecot tuned once more with an ECDSA P-256 certificate
    (every other TLS row uses RSA-2048);
  - warms every mailbox once on each of them;
  - runs build/bench/loadgen for every row (see ROWS), alternating the
    servers run by run, N runs each, and takes medians; the loopback ceilings
    (build/bench/lineserver, build/bench/sendfile_server) in the same run;
  - the attacker rows (attack-*, issue 6) once each, against a Postern with
    the default [guard] settings (its own instance) and Dovecot tuned:
    wrong passwords for one account from 1 or 50 loopback addresses;
  - prints the table and writes a RESULTS.md with the machine, the command,
    the table and PASS/FAIL for each target of the issue;
  - stops every process it started, also on errors and Ctrl-C.

bench/PROTOCOL.md is the interface with the load generator.
"""

import argparse
import atexit
import concurrent.futures
import datetime
import json
import os
import platform
import pwd
import random
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(TOP, "bench")
WORK = os.path.join(BENCH, "work")
BUILD = os.path.join(TOP, "build")
MAIL_ROOT = os.path.join(WORK, "mail")
POOL = os.path.join(WORK, "pool")
USERS_DIR = os.path.join(WORK, "users")
PASSWD = os.path.join(WORK, "passwd")
TLS_DIR = os.path.join(WORK, "tls")
HOST = "127.0.0.1"
MAIL_USER = "postbench"

# --- the data set ----------------------------------------------------------
# Bump DATA_VERSION when the layout changes: an old bench/work is rebuilt.
DATA_VERSION = 1
N_PLAIN = 10000       # idle at 10,000 needs 10,000 distinct mailboxes
N_HASHED = 256        # per hashed scheme
N_RETR = 256          # retr at concurrency 256 never shares a mailbox
N_LOGIN_MSGS = 5
N_BIGBOX = 100000
RETR_TOTAL = 25 * 1000 * 1000
RETR_MIN, RETR_MAX = 2 * 1024, 2 * 1024 * 1024
SCHEMES = {  # users file name -> (account prefix, count, scheme)
    "plain": ("p", N_PLAIN, "PLAIN"),
    "sha512": ("s", N_HASHED, "SHA512-CRYPT"),
    "yescrypt": ("y", N_HASHED, "CRYPT"),  # {CRYPT}$y$..., as `postern user add`
    "retr": ("r", N_RETR, "PLAIN"),
    "bigbox": ("bigbox", 1, "PLAIN"),
}

NOTES = []          # printed under the table and written to RESULTS.md


def note(msg):
    NOTES.append(msg)
    log("note: " + msg)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def die(msg):
    raise SystemExit(f"bench/run.py: {msg}")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# --- processes we start: every one is stopped at the end --------------------
class Procs:
    """Every child process the runner starts, so that all of them are stopped
    by PID at exit, on errors and on Ctrl-C."""

    live = []

    @classmethod
    def add(cls, p):
        cls.live.append(p)
        return p

    @classmethod
    def forget(cls, p):
        if p in cls.live:
            cls.live.remove(p)

    @classmethod
    def stop_all(cls):
        for p in list(reversed(cls.live)):
            stop_popen(p)
        cls.live.clear()


def stop_popen(p, grace=10.0):
    """SIGTERM, then SIGKILL after `grace` seconds; by PID only."""
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        except ProcessLookupError:
            pass
    Procs.forget(p)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- /proc helpers -----------------------------------------------------------
def proc_stat(pid):
    """(ppid, utime+stime+cutime+cstime in ticks, starttime) or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(b")") + 2:].split()
    return int(rest[1]), sum(int(x) for x in rest[11:15]), int(rest[19])


def proc_tree(root):
    """root and all its descendants (walks /proc once)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(d)
            if st:
                children.setdefault(st[0], []).append(int(d))
    out, pending = [], [root]
    while pending:
        pid = pending.pop()
        out.append(pid)
        pending.extend(children.get(pid, ()))
    return out


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass  # exited meanwhile
    return total


def cpu_ticks(pids):
    return sum((proc_stat(p) or (0, 0, 0))[1] for p in pids)


def machine_busy_ticks():
    """user + nice + system of all CPUs (interrupt time left out: loopback
    traffic is softirq time that no process is charged with)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2]


# --- the data set ----------------------------------------------------------
WORDS = ("the of and to in is that for it as was with be by on not he this are or "
         "his from at which but have an they you were her she there been one all "
         "would their we him more if no when will can said who so what up out "
         "about into than them only other time new some could these two may first "
         "then do any like my now over such our man me even most made after also "
         "did many off before must well back through years much where your way "
         "invoice meeting quarterly report attached please find below regards "
         "server mailbox delivery postmaster schedule update review budget").split()


def text_lines(rng, n):
    """n lines of text, 40-76 characters; about one in 15 starts with '.',
    and now and then a line is only '.' or '..' (both need dot-stuffing)."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.01:
            out.append(rng.choice((".", "..")))
            continue
        words, length = [], 0
        target = rng.randint(40, 76)
        while length < target:
            w = rng.choice(WORDS)
            words.append(w)
            length += len(w) + 1
        line = " ".join(words)[:76]
        if r < 0.07:
            line = "." + line
        out.append(line)
    return out


def postfix_name(rng, t, n):
    # Postfix's Maildir name: TIME.VdevIinodeMusec.host (no ,S= / ,W=).
    return f"{t}.V801I{0x40000 + n:x}M{rng.randint(0, 999999)}.mx1"


def make_message(rng, n, size, line_pool=None):
    t = 1764000000 + n * 7
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))
    head = (f"Return-Path: <sender{n % 97}@example.org>\n"
            f"X-Original-To: user@example.net\n"
            f"Delivered-To: user@example.net\n"
            f"Received: from mail.example.org (mail.example.org [192.0.2.{n % 250 + 1}])\n"
            f"\tby mx1.example.net (Postfix) with ESMTPS id 4Q{n:08X}\n"
            f"\tfor <user@example.net>; {date}\n"
            f"From: Sender {n % 97} <sender{n % 97}@example.org>\n"
            f"To: user@example.net\n"
            f"Subject: Message {n}: {' '.join(rng.choice(WORDS) for _ in range(5))}\n"
            f"Date: {date}\n"
            f"Message-ID: <{n}.{rng.getrandbits(48):x}@example.org>\n"
            f"MIME-Version: 1.0\n")
    body = []
    length = len(head)
    if size <= 64 * 1024:
        head += "Content-Type: text/plain; charset=us-ascii\n\n"
        length = len(head)
        while length < size:
            lines = (rng.sample(line_pool, 8) if line_pool else text_lines(rng, 8))
            for ln in lines:
                body.append(ln)
                length += len(ln) + 1
    else:
        # Larger messages: a text part and a base64 attachment.
        head += ('Content-Type: multipart/mixed; boundary="b1"\n\n'
                 "--b1\nContent-Type: text/plain; charset=us-ascii\n\n")
        body.extend(text_lines(rng, 40))
        body.append("--b1")
        body.append("Content-Type: application/octet-stream; name=\"data.bin\"")
        body.append("Content-Transfer-Encoding: base64")
        body.append("")
        import base64
        length = len(head) + sum(len(x) + 1 for x in body)
        raw = rng.randbytes(max(0, (size - length - 16) * 3 // 4))
        b64 = base64.encodebytes(raw).decode()  # 76-character lines
        body.append(b64.rstrip("\n"))
        body.append("--b1--")
    return (head + "\n".join(body) + "\n").encode()


def mail_ids():
    pw = pwd.getpwnam(MAIL_USER)
    return pw.pw_uid, pw.pw_gid


def ensure_mail_user():
    try:
        pwd.getpwnam(MAIL_USER)
    except KeyError:
        if os.geteuid() != 0:
            die(f"the system user {MAIL_USER} is missing and only root can create it")
        # A normal (not --system) uid: Dovecot refuses uids below
        # first_valid_uid = 500, and Debian's system uids are 100-999.
        run(["useradd", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", "--user-group", MAIL_USER])
        log(f"created the system user {MAIL_USER}")
    return mail_ids()


def make_maildir(user, uid, gid):
    home = os.path.join(MAIL_ROOT, user)
    md = os.path.join(home, "Maildir")
    for d in (home, md, md + "/cur", md + "/new", md + "/tmp"):
        os.mkdir(d, 0o700)
        os.chown(d, uid, gid)
    return md


def write_owned(path, data, uid, gid, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chown(path, uid, gid)


def hash_sha512(passwords):
    out = subprocess.run(["openssl", "passwd", "-6", "-stdin"], check=True,
                         input="\n".join(passwords) + "\n", capture_output=True,
                         text=True).stdout.split()
    assert len(out) == len(passwords) and all(h.startswith("$6$") for h in out)
    return out


def hash_yescrypt(passwords):
    if shutil.which("mkpasswd"):
        out = []
        for pw in passwords:
            h = subprocess.run(["mkpasswd", "-m", "yescrypt", "-s"], check=True,
                               input=pw + "\n", capture_output=True, text=True).stdout.strip()
            out.append(h)
    else:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
        rng = random.SystemRandom()
        out = [crypt.crypt(pw, "$y$j9T$" + "".join(rng.choice(alphabet) for _ in range(22)))
               for pw in passwords]
    assert all(h and h.startswith("$y$") for h in out), out[:1]
    return out


def setup_data(fresh):
    stamp = os.path.join(WORK, "data.json")
    uid, gid = ensure_mail_user()
    if fresh and os.path.exists(WORK):
        for d in os.listdir(WORK):
            kill_leftover(os.path.join(WORK, d, "pid"), os.path.join(WORK, d))
        log("--fresh: removing bench/work")
        shutil.rmtree(WORK)
    if os.path.exists(stamp):
        with open(stamp) as f:
            meta = json.load(f)
        if meta.get("version") == DATA_VERSION:
            st = os.stat(MAIL_ROOT)
            if (st.st_uid, st.st_gid) != (uid, gid):
                log(f"{MAIL_USER} changed ids: chown -R {uid}:{gid} the mail")
                run(["chown", "-R", f"{uid}:{gid}", MAIL_ROOT, POOL])
            log("reusing the data in bench/work (--fresh rebuilds it)")
            make_cert()
            return meta
        log("bench/work is from another data version: rebuilding")
    for d in (MAIL_ROOT, POOL, USERS_DIR):
        if os.path.exists(d):
            shutil.rmtree(d)
    for f in (PASSWD, stamp):
        if os.path.exists(f):
            os.unlink(f)
    os.makedirs(WORK, exist_ok=True)
    os.chmod(WORK, 0o755)
    t0 = time.time()
    rng = random.Random(4)  # the same messages every time
    os.makedirs(MAIL_ROOT, 0o755)
    os.chown(MAIL_ROOT, uid, gid)
    os.makedirs(USERS_DIR)
    for d in ("login", "retr"):
        os.makedirs(os.path.join(POOL, d))

    # Accounts.
    log("accounts: hashing passwords")
    secrets_rng = random.SystemRandom()
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    accounts = {}   # kind -> [(user, password)]
    lines = []
    for kind, (prefix, count, scheme) in SCHEMES.items():
        if count == 1:
            users = [prefix]
        else:
            width = len(str(count - 1))
            users = [f"{prefix}{i:0{width}d}" for i in range(count)]
        pws = ["".join(secrets_rng.choice(alphabet) for _ in range(16)) for _ in users]
        if scheme == "PLAIN":
            stored = ["{PLAIN}" + p for p in pws]
        elif scheme == "SHA512-CRYPT":
            stored = ["{SHA512-CRYPT}" + h for h in hash_sha512(pws)]
        else:
            stored = ["{CRYPT}" + h for h in hash_yescrypt(pws)]
        accounts[kind] = list(zip(users, pws))
        lines += [f"{u}:{s}::::::" for u, s in zip(users, stored)]
        with open(os.path.join(USERS_DIR, kind + ".txt"), "w") as f:
            f.writelines(f"{u} {p}\n" for u, p in accounts[kind])
    with open(PASSWD + ".tmp", "w") as f:
        f.write("# bench accounts, written by bench/run.py; read by Postern and Dovecot\n")
        f.writelines(x + "\n" for x in lines)
    os.chmod(PASSWD + ".tmp", 0o644)
    os.rename(PASSWD + ".tmp", PASSWD)

    # Message pools: login (5 small) and retr (2 KB - 2 MB, ~25 MB).
    log("messages: login and retr pools")
    n = 0
    login_files = []
    for size in (1800, 2600, 4200, 7000, 12000)[:N_LOGIN_MSGS]:
        name = postfix_name(rng, 1764000000 + n, n)
        write_owned(os.path.join(POOL, "login", name), make_message(rng, n, size), uid, gid)
        login_files.append(name)
        n += 1
    retr_files, total = [], 0
    sizes = [RETR_MIN, RETR_MAX]  # both ends of the range, then log-uniform
    while sum(sizes) < RETR_TOTAL:
        sizes.append(int(RETR_MIN * (RETR_MAX / RETR_MIN) ** rng.random()))
    rng.shuffle(sizes)
    for size in sizes:
        name = postfix_name(rng, 1764000000 + n, n)
        data = make_message(rng, n, size)
        write_owned(os.path.join(POOL, "retr", name), data, uid, gid)
        retr_files.append(name)
        total += len(data)
        n += 1
    log(f"retr pool: {len(retr_files)} messages, {total / 1e6:.1f} MB")

    # Mailboxes: the pool files hard-linked in (the same inode everywhere).
    log("mailboxes: login, hashed and retr accounts")
    for kind in ("plain", "sha512", "yescrypt", "retr"):
        pool = "retr" if kind == "retr" else "login"
        files = retr_files if kind == "retr" else login_files
        for user, _ in accounts[kind]:
            md = make_maildir(user, uid, gid)
            for name in files:
                os.link(os.path.join(POOL, pool, name), os.path.join(md, "new", name))

    # The bigbox: 100,000 distinct ~2 KB messages.
    log(f"bigbox: {N_BIGBOX} messages")
    md = make_maildir("bigbox", uid, gid)
    line_pool = text_lines(rng, 5000)
    for i in range(N_BIGBOX):
        name = postfix_name(rng, 1764000000 + n, n)
        write_owned(os.path.join(md, "new", name),
                    make_message(rng, n, rng.randint(1500, 2600), line_pool), uid, gid)
        n += 1
    make_cert()
    meta = {"version": DATA_VERSION, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "retr_messages": len(retr_files), "retr_bytes": total,
            "retr_files": retr_files, "login_files": login_files,
            "accounts": {k: len(v) for k, v in accounts.items()}}
    with open(stamp, "w") as f:
        json.dump(meta, f, indent=1)
    log(f"data set ready in {time.time() - t0:.0f} s")
    return meta


# The certificates, by the prefix of their file names in bench/work/tls:
# (the `openssl req -newkey` arguments, what `openssl x509 -text` shows).
CERTS = {
    # RSA-2048, the kind most mail servers still present: the primary rows.
    "": (["rsa:2048"], b"rsaEncryption"),
    # ECDSA P-256, what certbot issues by default since 2.0: the tls-ecdsa
    # rows. Its signature is far cheaper than RSA's, so these rows show the
    # handshake without the cost that dominates the RSA rows.
    "ecdsa-": (["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"], b"prime256v1"),
}


def make_cert():
    """Both servers use the same self-signed certificates."""
    os.makedirs(TLS_DIR, exist_ok=True)
    for prefix, (newkey, marker) in CERTS.items():
        cert = os.path.join(TLS_DIR, prefix + "cert.pem")
        key = os.path.join(TLS_DIR, prefix + "key.pem")
        if os.path.exists(cert) and os.path.exists(key):
            out = run(["openssl", "x509", "-noout", "-text", "-in", cert], capture_output=True)
            if marker in out.stdout:
                continue
        run(["openssl", "req", "-x509", "-newkey", *newkey,
             "-nodes", "-days", "825", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", key, "-out", cert], capture_output=True)
        os.chmod(key, 0o600)


# --- a small POP3 client (warm-up and checks) ------------------------------
class Pop3:
    def __init__(self, port, tls=False, timeout=60):
        s = socket.create_connection((HOST, port), timeout=timeout)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        self.s = s
        self.buf = bytearray()
        self.line()

    def line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                ln = bytes(self.buf[:i])
                del self.buf[:i + 2]
                if not ln.startswith(b"+OK"):
                    raise RuntimeError(ln.decode(errors="replace"))
                return ln
            self.fill()

    def fill(self):
        d = self.s.recv(1 << 18)
        if not d:
            raise RuntimeError("connection closed")
        self.buf += d

    def cmd(self, c):
        self.s.sendall(c.encode() + b"\r\n")
        return self.line()

    def multi(self, c):
        """A multi-line answer; returns its size in bytes (terminator excluded)."""
        self.cmd(c)
        # An empty body is just ".\r\n"; otherwise it ends with "\r\n.\r\n".
        pos = 0
        while True:
            if self.buf[:3] == b".\r\n":
                del self.buf[:3]
                return 0
            i = self.buf.find(b"\r\n.\r\n", pos)
            if i >= 0:
                size = i + 2
                del self.buf[:i + 5]
                return size
            pos = max(0, len(self.buf) - 4)
            self.fill()

    def login(self, user, pw):
        self.cmd("USER " + user)
        self.cmd("PASS " + pw)

    def close(self):
        try:
            self.cmd("QUIT")
        finally:
            self.s.close()


def read_users(kind):
    with open(os.path.join(USERS_DIR, kind + ".txt")) as f:
        return [tuple(x.split()) for x in f if x.strip()]


def warm(server):
    """One login per login account, one LIST + RETR-everything pass per retr
    mailbox: indexes are built (Dovecot's on the first session, Postern's
    postern-index) before anything is timed."""
    def login_one(acct):
        c = Pop3(server.port, timeout=300)
        c.login(*acct)
        c.cmd("STAT")
        c.close()

    def retr_one(acct):
        c = Pop3(server.port)
        c.login(*acct)
        listing = c.cmd("STAT")
        count = int(listing.split()[1])
        for i in range(1, count + 1):
            c.multi(f"RETR {i}")
        c.multi("UIDL")
        c.close()

    t0 = time.time()
    jobs = []
    for kind in ("plain", "sha512", "yescrypt"):
        jobs += [(login_one, a) for a in read_users(kind)]
    jobs += [(retr_one, a) for a in read_users("retr")]
    # The bigbox too: Dovecot's first session moves its 100,000 messages
    # from new/ to cur/, once; every cold run after that starts alike.
    jobs = [(login_one, a) for a in read_users("bigbox")] + jobs
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        for fut in [ex.submit(f, a) for f, a in jobs]:
            fut.result()
    log(f"warmed {server.name}: {len(jobs)} mailboxes in {time.time() - t0:.1f} s")


# --- servers ----------------------------------------------------------------
def port_free(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_port_free(port, timeout=5.0):
    deadline = time.time() + timeout
    while not port_free(port):
        if time.time() >= deadline:
            return False
        time.sleep(0.2)
    return True


def wait_greeting(port, proc, what, timeout=30.0, tls=False, expect=b"+OK"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            s = socket.create_connection((HOST, port), timeout=2)
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                s = ctx.wrap_socket(s)
            data = s.recv(100)
            s.close()
            if data.startswith(expect):
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def kill_leftover(pidfile, marker):
    """A server left by a killed earlier run of this script: its pid file
    names it, and its command line must contain our config path."""
    try:
        pid = int(open(pidfile).read())
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return
    if marker in cmdline:
        log(f"stopping a server left over by an earlier run: pid {pid} ({cmdline.strip()})")
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)


class Server:
    kind = "?"

    def __init__(self, name, label, port, tls_port=None, cert=""):
        self.name, self.label = name, label
        self.port, self.tls_port = port, tls_port
        # The certificate's prefix in CERTS.
        self.cert_path = os.path.join(TLS_DIR, cert + "cert.pem")
        self.key_path = os.path.join(TLS_DIR, cert + "key.pem")
        self.dir = os.path.join(WORK, name)
        self.proc = None
        self.pidfile = os.path.join(self.dir, "pid")
        self.logs = []

    def command(self):
        raise NotImplementedError

    def configure(self):
        os.makedirs(self.dir, exist_ok=True)

    def start(self):
        kill_leftover(self.pidfile, self.dir)
        for p in (self.port, self.tls_port):
            if p and not wait_port_free(p):
                die(f"{self.name}: port {p} on {HOST} is in use (--port-base moves every port)")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        err = open(self.stderr_path, "wb")
        self.proc = Procs.add(subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
            preexec_fn=raise_nofile, start_new_session=True, cwd=self.dir))
        err.close()
        with open(self.pidfile, "w") as f:
            f.write(str(self.proc.pid))
        if not wait_greeting(self.port, self.proc, self.name, expect=self.greeting):
            self.stop()
            die(f"{self.name} did not start; {self.stderr_path}:\n" + self.tail())
        self.settle()

    greeting = b"+OK"

    def settle(self):
        """Wait until the process tree stops changing (Dovecot spawns its
        process_min_avail processes after the first greeting)."""
        last, stable = None, 0
        for _ in range(50):
            n = len(proc_tree(self.proc.pid))
            stable = stable + 1 if n == last else 0
            if stable >= 3:
                return
            last = n
            time.sleep(0.1)

    def tail(self, n=20):
        out = []
        for p in [self.stderr_path] + self.logs:
            try:
                with open(p, errors="replace") as f:
                    lines = f.readlines()[-n:]
                out.append(f"--- {p}\n" + "".join(lines))
            except OSError:
                pass
        return "\n".join(out)

    PROBLEM = re.compile(r"level=(warning|error)|event=auth_fail|Error:|Warning:|Fatal:|Panic:")

    def problems(self, n=12):
        """The last warning and error lines of the server's logs."""
        out = []
        for p in [self.stderr_path] + self.logs:
            try:
                with open(p, errors="replace") as f:
                    out += [ln.rstrip() for ln in f if self.PROBLEM.search(ln)
                            and "PLAIN password" not in ln]
            except OSError:
                pass
        return out[-n:]

    def truncate_logs(self):
        for p in self.logs:
            try:
                os.truncate(p, 0)
            except OSError:
                pass

    def stop(self):
        if self.proc is None:
            return
        tree = [(p, (proc_stat(p) or (0, 0, 0))[2]) for p in proc_tree(self.proc.pid)]
        stop_popen(self.proc, grace=15)
        # Anything of ours the master left behind (same PID and start time).
        for pid, start in tree[1:]:
            st = proc_stat(pid)
            if st and st[2] == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc = None
        try:
            os.unlink(self.pidfile)
        except OSError:
            pass

    def restart(self):
        self.stop()
        self.start()

    def pids(self):
        return proc_tree(self.proc.pid) if self.proc else []


class Postern(Server):
    kind = "postern"

    def __init__(self, name, label, port, tls_port, cache, cert=""):
        super().__init__(name, label, port, tls_port, cert)
        self.cache = cache
        self.conf = os.path.join(self.dir, "postern.conf")
        self.audit = os.path.join(self.dir, "audit.log")
        self.logs = [self.audit]

    def tuning(self):
        """The [limits] and [guard] sections of the configuration."""
        return """
[limits]
; the defaults (10000 and 20) would throttle the benchmark: every session
; comes from 127.0.0.1, and idle holds 10,000 at once
max_connections = 12000
max_connections_per_ip = 12000

[guard]
; likewise: every session is unauthenticated for a moment, from one address
max_preauth_per_ip = 12000
"""

    def write_conf(self, with_cache):
        cache_line = f"cache = {'yes' if self.cache else 'no'}\n" if with_cache else ""
        with open(self.conf, "w") as f:
            f.write(f"""; written by bench/run.py ({self.name})
[server]
listen = {HOST}:{self.port}
listen_tls = {HOST}:{self.tls_port}
threads = 0
state_dir = state

[tls]
cert = {self.cert_path}
key = {self.key_path}

[auth]
passdb = passwd-file:{PASSWD}
require_tls = yes
allow_plaintext_loopback = yes
{cache_line}
[mail]
location = maildir:{MAIL_ROOT}/%u/Maildir
{self.tuning()}
[log]
audit = {self.audit}
""")

    def configure(self):
        super().configure()
        self.write_conf(True)
        r = subprocess.run([os.path.join(BUILD, "postern"), "-c", self.conf, "check"],
                           capture_output=True, text=True)
        if r.returncode != 0 and "cache" in (r.stdout + r.stderr):
            note(f"{self.name}: `postern check` rejects [auth] cache "
                 f"({(r.stdout + r.stderr).strip().splitlines()[-1]}); "
                 "running without the key (the server's built-in behaviour)")
            self.write_conf(False)
            r = subprocess.run([os.path.join(BUILD, "postern"), "-c", self.conf, "check"],
                               capture_output=True, text=True)
        if r.returncode != 0:
            die(f"postern check {self.conf} failed:\n{r.stdout}{r.stderr}")

    def command(self):
        return [os.path.join(BUILD, "posternd"), "-c", self.conf, "-f"]


# The [guard] and [limits] keys an attacker meets, and their macros in
# src/daemon/defaults.h: the attack instance is configured with these values
# read from that file, so that it runs, and the report names, the defaults.
GUARD_DEFAULTS = [
    ("guard", "failure_delay", "DEFAULT_FAILURE_DELAY"),
    ("guard", "failure_delay_max", "DEFAULT_FAILURE_DELAY_MAX"),
    ("guard", "max_preauth_per_ip", "DEFAULT_MAX_PREAUTH_PER_IP"),
    ("guard", "max_auth_failures", "DEFAULT_MAX_AUTH_FAILURES"),
    ("guard", "ban_after", "DEFAULT_BAN_AFTER"),
    ("guard", "ban_window", "DEFAULT_BAN_WINDOW"),
    ("guard", "ban_time", "DEFAULT_BAN_TIME"),
    ("guard", "account_failures", "DEFAULT_ACCOUNT_FAILURES"),
    ("guard", "account_window", "DEFAULT_ACCOUNT_WINDOW"),
    ("limits", "max_connections_per_ip", "DEFAULT_MAX_CONN_PER_IP"),
]


def guard_defaults():
    """[(section, key, value)] from src/daemon/defaults.h."""
    path = os.path.join(TOP, "src", "daemon", "defaults.h")
    with open(path) as f:
        text = f.read()
    out = []
    for section, key, macro in GUARD_DEFAULTS:
        m = re.search(rf"^#define\s+{macro}\s+(\d+)\b", text, re.M)
        if not m:
            die(f"{path}: no numeric {macro} (for [{section}] {key})")
        out.append((section, key, int(m.group(1))))
    return out


class PosternAttack(Postern):
    """The attacker rows' Postern: the default [guard] and [limits] (the
    main instances raise max_preauth_per_ip and the connection limits so
    that the load rows are not throttled), no trusted networks, its own
    state_dir, emptied at every start: bans survive a restart, and each row
    starts from a guard that has seen nothing."""

    def __init__(self, name, label, port, tls_port):
        super().__init__(name, label, port, tls_port, cache=True)
        self.guard = guard_defaults()

    def tuning(self):
        sections = {}
        for section, key, value in self.guard:
            sections.setdefault(section, []).append(f"{key} = {value}")
        return "".join(f"\n[{sec}]\n; the defaults (src/daemon/defaults.h), written out\n"
                       + "\n".join(lines) + "\n" for sec, lines in sections.items())

    def write_conf(self, with_cache):
        # The attacker faces the server as installed: no cache line either.
        super().write_conf(False)

    def start(self):
        shutil.rmtree(os.path.join(self.dir, "state"), ignore_errors=True)
        super().start()


class Dovecot(Server):
    kind = "dovecot"

    def __init__(self, name, label, port, tls_port, template, cache_size="0", cert=""):
        super().__init__(name, label, port, tls_port, cert)
        self.template = template
        self.cache_size = cache_size
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.logs = [self.log_path]

    def configure(self):
        super().configure()
        uid, gid = mail_ids()
        with open(os.path.join(BENCH, self.template)) as f:
            text = f.read()
        extra = ""
        if uid < 500:  # Dovecot's first_valid_uid default
            extra = f"first_valid_uid = {uid}  # {MAIL_USER} has a uid below 500\n"
        subst = {
            "BASE_DIR": os.path.join(self.dir, "run"),
            "STATE_DIR": os.path.join(self.dir, "state"),
            "INSTANCE": "bench-" + self.name,
            "LOG_PATH": self.log_path,
            "TLS_CERT": self.cert_path,
            "TLS_KEY": self.key_path,
            "PASSWD_FILE": PASSWD,
            "MAIL_UID": str(uid), "MAIL_GID": str(gid),
            "MAIL_ROOT": MAIL_ROOT,
            "PORT": str(self.port), "TLS_PORT": str(self.tls_port),
            "NPROC": str(os.cpu_count()),
            "AUTH_CACHE_SIZE": self.cache_size,
            "EXTRA": extra,
        }
        for k, v in subst.items():
            text = text.replace(f"@@{k}@@", v)
        left = re.findall(r"@@\w+@@", text)
        if left:
            die(f"{self.template}: unknown placeholders {left}")
        header = (f"# written by bench/run.py from bench/{self.template} "
                  f"for the instance {self.name}; edit the template, not this file\n")
        for d in ("run", "state"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write(header + text)
        r = subprocess.run(["doveconf", "-c", self.conf, "-n"], capture_output=True, text=True)
        if r.returncode != 0:
            die(f"doveconf -c {self.conf} failed:\n{r.stderr}")

    def command(self):
        return ["dovecot", "-F", "-c", self.conf]


class Ceiling(Server):
    """lineserver or sendfile_server from build/bench."""
    kind = "ceiling"

    def __init__(self, name, label, port, argv):
        super().__init__(name, label, port)
        self.argv = argv

    def command(self):
        return self.argv

    def start(self):
        if self.name == "sendfile":
            # It sends on connect: wait until the port accepts instead.
            kill_leftover(self.pidfile, self.dir)
            if not wait_port_free(self.port):
                die(f"{self.name}: port {self.port} on {HOST} is in use")
            self.stderr_path = os.path.join(self.dir, "stderr.log")
            err = open(self.stderr_path, "wb")
            self.proc = Procs.add(subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                preexec_fn=raise_nofile, start_new_session=True, cwd=self.dir))
            err.close()
            deadline = time.time() + 10
            while time.time() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection((HOST, self.port), timeout=1).close()
                    return
                except OSError:
                    time.sleep(0.05)
            self.stop()
            die(f"{self.name} did not start:\n" + self.tail())
        else:
            super().start()


# --- the rows -----------------------------------------------------------------
# Each row: name, loadgen mode, users file, concurrency, flags, the servers
# (instance names) measured, the ceiling (if any), whether --quick keeps it.
P, PN, T, TN, D = "postern", "postern-nocache", "dovecot-tuned", "dovecot-tuned-nocache", "dovecot-default"
PA = "postern-attack"
# The same as P and T, with the ECDSA P-256 certificate (a second instance
# each: Postern has one certificate per server).
PE, TE = "postern-ecdsa", "dovecot-tuned-ecdsa"


def rows_all():
    rows = []

    def add(name, mode, users, c, servers, ceiling=None, flags=(), quick=False, **kw):
        rows.append(dict(name=name, mode=mode, users=users, c=c, servers=servers,
                         ceiling=ceiling, flags=list(flags), quick=quick, **kw))

    for c in (1, 16, 256):
        add(f"login-plain-c{c}", "login", "plain", c, [P, T, D], ceiling="lineserver",
            quick=c in (1, 16))
    for scheme in ("sha512", "yescrypt"):
        add(f"login-{scheme}-c16-cache", "login", scheme, 16, [P, T],
            quick=scheme == "sha512")
        add(f"login-{scheme}-c16-nocache", "login", scheme, 16, [PN, TN, D],
            quick=scheme == "yescrypt")
    for c in (1, 16, 256):
        add(f"retr-c{c}", "retr", "retr", c, [P, T, D],
            ceiling="sendfile" if c in (1, 16) else None, quick=c in (1, 16))
    for kind, flags in (("full", ["--tls"]), ("resume", ["--tls", "--resume"])):
        for c in (1, 16, 256):
            add(f"tls-{kind}-c{c}", "login", "plain", c, [P, T, D], flags=flags,
                quick=c == 16)
    # TLS 1.2 too: older clients negotiate it, and its resumption (no key
    # exchange) differs from TLS 1.3's, which still runs an ECDHE.
    for kind, flags in (("full", ["--tls", "--tls12"]), ("resume", ["--tls", "--tls12", "--resume"])):
        add(f"tls12-{kind}-c16", "login", "plain", 16, [P, T, D], flags=flags, quick=True)
    # The same TLS 1.3 rows with an ECDSA P-256 certificate (the instances
    # PE and TE): the RSA rows stay the primary ones.
    for kind, flags in (("full", ["--tls"]), ("resume", ["--tls", "--resume"])):
        add(f"tls-ecdsa-{kind}-c16", "login", "plain", 16, [PE, TE], flags=flags,
            skip={D: "Dovecot default forks two processes per TLS login, which costs it "
                     "far more than the certificate's signature (see the RSA rows); "
                     "the targets are against Dovecot tuned"})
    add("idle-1000", "idle", "plain", 1000, [P, T, D], quick=True)
    add("idle-10000", "idle", "plain", 10000, [P, T, D],
        slow={D: "Dovecot default forks a process per session and logs in at about "
                 "a hundred a second: 10,000 sessions take minutes; run once "
                 "(--slow: three times)"})
    add("idle-tls-1000", "idle", "plain", 1000, [P, T, D], flags=["--tls"], quick=True)
    add("idle-tls-10000", "idle", "plain", 10000, [P, T], flags=["--tls"],
        skip={D: "Dovecot default keeps two processes per TLS session (~1.9 MB PSS): "
                 "10,000 would need ~19 GB and 20,000 processes"})
    add("bigbox", "bigbox", "bigbox", 1, [P, T, D], quick=True)
    # The attacker (issue 6): wrong passwords for one account for
    # --attack-seconds, once per server (the guard's state is the point,
    # so no repeats to take a median of). From one address it opens as
    # many connections as it is allowed (max_preauth_per_ip); from 50, one
    # each.
    # The servers are measured at the same time: each spends the rows
    # waiting out its failure delays (a few guesses a second, nothing a
    # core notices), and one after the other would double the rows' time.
    for n, c in ((1, 10), (50, 50)):
        add(f"attack-{n}ip", "guess", None, c, [PA, T], sources=n, once=True, parallel=True,
            quick=True)
    # Dovecot default's cells of the cache rows: it has no auth cache.
    for r in rows:
        if r["name"].endswith("-cache"):
            r["skip"] = {D: "no auth cache in the default configuration: see the -nocache row"}
    return rows


# metric: (key, label, unit, higher_is_better)
METRICS = {
    "login": [("rate", "", "sess/s", True), ("p50_ms", " p50", "ms", False),
              ("p99_ms", " p99", "ms", False)],
    "retr": [("mb_per_s", "", "MB/s", True), ("msgs_per_s", " msgs", "msg/s", True)],
    "idle": [("kib_per_session", " mem", "KiB/sess", False), ("p99_ms", " NOOP p99", "ms", False)],
    "bigbox": [("first_login_stat", " 1st login+STAT", "ms", False),
               ("login_stat", " login+STAT", "ms", False),
               ("list", " LIST", "ms", False), ("uidl", " UIDL", "ms", False)],
    "guess": [("guesses_per_s", "", "guess/s", False), ("guesses", " guesses", "guesses", False)],
}
CEILING_KEY = {"login": "rate", "retr": "mb_per_s"}


# --- running loadgen ------------------------------------------------------------
class Bench:
    def __init__(self, args, meta):
        self.args = args
        self.meta = meta
        self.loadgen = args.loadgen
        self.raw_bytes = sum(os.path.getsize(os.path.join(POOL, "retr", f))
                             for f in meta["retr_files"])
        # The attacked account: a PLAIN one that no other row of the attack
        # instance logs into.
        self.victim = read_users("plain")[0][0]

    def loadgen_cmd(self, mode, port, users, c, flags, extra=()):
        a = self.args
        cmd = [self.loadgen, mode, "--host", HOST, "--port", str(port),
               "--concurrency", str(c)]
        if users:
            cmd += ["--users", os.path.join(USERS_DIR, users + ".txt")]
        if mode not in ("bigbox", "idle"):
            cmd += ["--duration", str(a.duration), "--warmup", str(a.warmup)]
        return cmd + list(flags) + list(extra)

    def run_loadgen(self, cmd, timeout):
        p = Procs.add(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True))
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_popen(p, grace=2)
            raise RuntimeError(f"loadgen timed out after {timeout:.0f} s: {' '.join(cmd)}")
        finally:
            Procs.forget(p)
        return self.parse(out, err, p.returncode, cmd)

    @staticmethod
    def parse(out, err, rc, cmd):
        res = None
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if "mode" in obj:
                    res = obj
        if res is None:
            raise RuntimeError(f"loadgen exit {rc}, no result: {' '.join(cmd)}\n{err.strip()[-2000:]}")
        if rc != 0:
            res.setdefault("errors", 0)
            res["loadgen_exit"] = rc
        if err.strip():
            res["loadgen_stderr"] = err.strip()[-1500:]
        return res

    # One measurement of one row on one server: a dict of metric values.
    def measure(self, row, server):
        mode = row["mode"]
        server.truncate_logs()
        port = server.port
        if "--tls" in row["flags"] and server.tls_port:
            port = server.tls_port
        if mode in ("idle", "guess") and server.kind != "ceiling":
            # A fresh server, so that the baseline is the server at rest and
            # no process or memory is left over from an earlier row; for
            # guess, no ban or failure delay left by the row before (the
            # attack instance also empties its state_dir, where bans are
            # kept across restarts).
            server.restart()
            time.sleep(0.5)
            server.settle()
        cpu0, busy0, t0 = cpu_ticks(server.pids()), machine_busy_ticks(), time.time()
        if server.kind == "ceiling":
            if server.name == "sendfile":
                res = self.run_loadgen(self.loadgen_cmd("raw", port, None, row["c"], [],
                                                        ["--count", str(self.raw_bytes)]),
                                       timeout=self.args.warmup + self.args.duration + 120)
            else:
                res = self.run_loadgen(self.loadgen_cmd("login", port, row["users"], row["c"], []),
                                       timeout=self.args.warmup + self.args.duration + 120)
        elif mode == "idle":
            res = self.measure_idle(row, server, port)
        elif mode == "bigbox":
            res = self.measure_bigbox(row, server, port)
        elif mode == "guess":
            # Dovecot takes plaintext USER/PASS only from a client on its own
            # address (127.0.0.1), so from 127.0.0.2 and up the attacker
            # speaks POP3S to it: its configuration stays that of the other
            # rows, and at these rates TLS costs nothing that shows.
            tls = server.kind == "dovecot"
            cmd = [self.loadgen, "guess", "--host", HOST,
                   "--port", str(server.tls_port if tls else port),
                   "--concurrency", str(row["c"]), "--sources", str(row["sources"]),
                   "--user", self.victim, "--duration", str(self.args.attack_seconds)]
            if tls:
                cmd.append("--tls")
            res = self.run_loadgen(cmd, timeout=self.args.attack_seconds + 120)
        else:
            res = self.run_loadgen(self.loadgen_cmd(mode, port, row["users"], row["c"], row["flags"]),
                                   timeout=self.args.warmup + self.args.duration + 300)
        wall = time.time() - t0
        hz = os.sysconf("SC_CLK_TCK")
        srv = (cpu_ticks(server.pids()) - cpu0) / hz
        busy = (machine_busy_ticks() - busy0) / hz
        gen = (res.get("cpu_user_s") or 0) + (res.get("cpu_sys_s") or 0)
        if mode in ("idle", "bigbox"):
            gen = 0  # several loadgen processes or phases: not comparable
        if mode == "guess":
            res["seconds"] = self.args.attack_seconds
            res["sources"] = row["sources"]
        if wall > 0:
            res["server_cpu_pct"] = round(100.0 * srv / wall, 1)
            # CPU used by neither the server nor the generator (other
            # processes on the machine, and this script): a noise indicator.
            res["other_cpu_pct"] = round(100.0 * max(0.0, busy - srv - gen) / wall, 1)
        if res.get("errors"):
            res["log_problems"] = server.problems()
        return res

    def measure_idle(self, row, server, port):
        base = pss_kib(server.pids())
        base_n = len(server.pids())
        cmd = self.loadgen_cmd("idle", port, row["users"], row["c"], row["flags"],
                               ["--hold", str(self.args.hold)])
        # stderr to a file: only stdout is read while the sessions are held.
        errf = open(os.path.join(WORK, "loadgen-idle.stderr"), "w+")
        p = Procs.add(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True))
        out_lines, ready, loaded, loaded_n = [], None, None, 0
        t0 = time.time()
        try:
            for line in p.stdout:
                out_lines.append(line)
                s = line.strip()
                if s.startswith("{") and '"ready"' in s and ready is None:
                    ready = json.loads(s)
                    pids = server.pids()
                    loaded_n = len(pids)
                    loaded = pss_kib(pids)
                    log(f"  {server.name}: {ready.get('sessions')} sessions ready after "
                        f"{time.time() - t0:.1f} s; {loaded_n} processes, "
                        f"PSS {base} -> {loaded} KiB")
            p.wait(timeout=self.args.hold + 600)
        finally:
            stop_popen(p, grace=2)
            errf.seek(0)
            err = errf.read()
            errf.close()
        res = self.parse("".join(out_lines), err, p.returncode, cmd)
        # loadgen counts a slot twice when a ready session was dropped and
        # opened again before the hold; more than C sessions cannot be held.
        sessions = min((ready or {}).get("sessions") or row["c"], row["c"])
        res["pss_base_kib"], res["pss_loaded_kib"] = base, loaded
        res["procs_base"], res["procs_loaded"] = base_n, loaded_n
        res["setup_s"] = round(time.time() - t0 - self.args.hold, 1)
        if loaded is None:
            res["errors"] = max(1, res.get("errors", 0))
            res["kib_per_session"] = None
        else:
            res["kib_per_session"] = round((loaded - base) / sessions, 1)
        return res

    def measure_bigbox(self, row, server, port):
        md = os.path.join(MAIL_ROOT, "bigbox", "Maildir")
        cold = []
        for name in os.listdir(md):
            if server.kind == "postern" and name.startswith("postern-index"):
                cold.append(name)
            if server.kind == "dovecot" and (name.startswith("dovecot.index")
                                             or name == "dovecot-uidlist"):
                cold.append(name)
        for name in cold:
            os.unlink(os.path.join(md, name))
        # A cold index, not a cold disk: what the rows before did to the
        # page cache must not decide which server reads from disk.
        for sub in ("cur", "new"):
            d = os.path.join(md, sub)
            for name in os.listdir(d):
                with open(os.path.join(d, name), "rb") as f:
                    f.read()
        cmd = self.loadgen_cmd("bigbox", port, row["users"], 1, [], ["--count", str(N_BIGBOX)])
        first = self.run_loadgen(cmd, timeout=600)
        res = self.run_loadgen(cmd, timeout=600)
        tm = res.get("times_ms") or {}
        res["first_login_stat"] = (first.get("times_ms") or {}).get("login_stat")
        res["first_times_ms"] = first.get("times_ms")
        res["login_stat"], res["list"], res["uidl"] = tm.get("login_stat"), tm.get("list"), tm.get("uidl")
        res["errors"] = res.get("errors", 0) + first.get("errors", 0)
        res["cpu_pct"] = max(res.get("cpu_pct", 0), first.get("cpu_pct", 0))
        return res


# --- table -------------------------------------------------------------------
def accounts_text(meta):
    a = meta["accounts"]
    return (f"{a['plain']} PLAIN, {a['sha512']} SHA512-CRYPT, {a['yescrypt']} yescrypt "
            f"login accounts (5 messages each), {a['retr']} retr accounts (PLAIN), 1 bigbox")


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, unit):
    if v is None:
        return "-"
    if unit in ("ms",):
        return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"
    if unit == "KiB/sess":
        return f"{v:.1f}"
    if unit == "guess/s":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    if unit == "guesses":
        return f"{v:.0f}"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def summarise(row, results, cpu_mark):
    """results: instance -> [result dicts]. Returns per instance:
    {metric: median, 'cpu': median gen cpu, 'errors': total, 'runs': n}."""
    out = {}
    for inst, rs in results.items():
        if not rs:
            continue
        d = {"runs": len(rs), "errors": sum(r.get("errors") or 0 for r in rs),
             "cpu": median([r.get("cpu_pct") for r in rs]),
             "server_cpu": median([r.get("server_cpu_pct") for r in rs]),
             "other_cpu": median([r.get("other_cpu_pct") for r in rs])}
        keys = [m[0] for m in METRICS[row["mode"]]]
        if inst in ("lineserver", "sendfile"):
            keys = [CEILING_KEY[row["mode"]]]
        for k in keys:
            d[k] = median([r.get(k) for r in rs])
        out[inst] = d
    return out


COLS = [(P, "Postern"), (T, "Dovecot tuned"), (D, "Dovecot default")]


def cell(s, key, unit, show_cpu, cpu_mark):
    if s is None:
        return "-"
    v = fmt(s.get(key), unit)
    if s["errors"]:
        v += " E"
    if show_cpu and s.get("cpu") is not None:
        v += f" [{s['cpu']:.0f}%{'!' if s['cpu'] > cpu_mark else ''}]"
    return v


def table_lines(rows, summaries, skipped, cpu_mark):
    head = ["row", "unit", "Postern", "Dovecot tuned", "Dovecot default", "P/tuned",
            "ceiling", "P/ceil"]
    lines = []
    for row in rows:
        s = summaries.get(row["name"])
        if s is None:
            continue
        p = s.get(P) or s.get(PN) or s.get(PA) or s.get(PE)
        t = s.get(T) or s.get(TN) or s.get(TE)
        d = s.get(D)
        ceil = s.get("lineserver") or s.get("sendfile")
        for i, (key, label, unit, hib) in enumerate(METRICS[row["mode"]]):
            first = i == 0
            unit_s = unit + (" ↑" if hib else " ↓")
            ratio = "-"
            if p and t and p.get(key) and t.get(key):
                ratio = f"{p[key] / t[key]:.2f}"
            cv, cr = "", ""
            if ceil and first:
                ck = CEILING_KEY[row["mode"]]
                cv = cell(ceil, ck, unit, True, cpu_mark)
                if p and p.get(key) and ceil.get(ck):
                    cr = f"{100 * p[key] / ceil[ck]:.0f}%"
            dcell = cell(d, key, unit, first, cpu_mark)
            if d is None and D in skipped.get(row["name"], {}):
                dcell = "skipped"
            lines.append([row["name"] + label, unit_s, cell(p, key, unit, first, cpu_mark),
                          cell(t, key, unit, first, cpu_mark), dcell, ratio, cv or "", cr or ""])
    widths = [max(len(x[i]) for x in [head] + lines) for i in range(len(head))]

    def fmtline(x):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(x, widths)))
    out = [fmtline(head), "  ".join("-" * w for w in widths)]
    out += [fmtline(x) for x in lines]
    return out


# --- the attacker rows -------------------------------------------------------------
def attack_lines(rows, raw, guard):
    """The "Attacker guessing rate" table (Markdown) and what it was run
    with; [] when no attack row ran."""
    head = ["row", "server", "addresses", "connections", "seconds", "guesses", "guesses/s",
            "refused", "errors", "median answer"]
    body = []
    for row in rows:
        if row["mode"] != "guess":
            continue
        for inst, rs in raw.get(row["name"], {}).items():
            for r in rs:
                label = {PA: "Postern (default guard)", T: "Dovecot tuned"}.get(inst, inst)
                if r.get("failed"):
                    body.append([row["name"], label, str(row["sources"]), str(row["c"]),
                                 "-", "-", "-", "-", "failed", "-"])
                    continue
                body.append([row["name"], label, str(row["sources"]), str(row["c"]),
                             f"{r.get('seconds', 0):.0f}", str(r.get("guesses")),
                             f"{r.get('guesses_per_s', 0):.2f}", str(r.get("refused")),
                             str(r.get("errors")), f"{(r.get('p50_ms') or 0) / 1000:.1f} s"])
    if not body:
        return []
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(x) + " |" for x in body]
    settings = ", ".join(f"`{k} = {v}`" for sec, k, v in guard if sec == "guard")
    limits = ", ".join(f"`{k} = {v}`" for sec, k, v in guard if sec == "limits")
    out += ["",
            "Wrong passwords (a new one each time) for one PLAIN account, `loadgen guess`, "
            "each connection from 127.0.0.(2 + i % addresses); run once per server, not "
            "repeated (a second run would meet the first one's bans). Postern: its own "
            f"instance with the default guard (src/daemon/defaults.h): [guard] {settings}; "
            f"[limits] {limits}; state_dir emptied and the server restarted before each row. "
            "Dovecot tuned: bench/dovecot-tuned.conf as in the other rows, restarted before "
            "each row, attacked over POP3S (it takes plaintext passwords only from its own "
            "address); it has no ban: failed logins from an address wait its auth penalty "
            "(2 s, doubling to 15 s) and then auth_failure_delay (2 s). Both servers were "
            "attacked at the same time, from the same addresses. guesses = PASS answers received within the time; refused = connections "
            "turned away (an -ERR greeting, or a session dropped with [SYS/TEMP]), after each "
            "of which that connection waits 1 s; median answer = the time from PASS to its "
            "answer (the failure delay)."]
    return out


# --- targets ---------------------------------------------------------------------
def num(v):
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def times(r, factor):
    """A ratio for the targets table, with a third decimal where two would
    round it onto the target it misses (1.996 is not 2.00)."""
    return f"{r:.3f}x" if r < factor and round(r, 2) >= factor else f"{r:.2f}x"


def session_us(summaries, row, inst):
    """CPU of the machine per session, server and generator together, in µs."""
    s = summaries.get(row, {}).get(inst) or {}
    if not s.get("rate") or s.get("cpu") is None or s.get("server_cpu") is None:
        return None
    return (s["cpu"] + s["server_cpu"]) / 100 / s["rate"] * 1e6


def floor_ceiling(floor, version, plain_us):
    """The best resumed/full ratio a server on this OpenSSL can show: the
    library's handshakes alone, and with a plain POP3 session on top."""
    f = (floor or {}).get(version)
    if not f:
        return None, None
    full = f["full_server_us"] + f["full_client_us"]
    res = f["resumed_server_us"] + f["resumed_client_us"]
    with_pop3 = (full + plain_us) / (res + plain_us) if plain_us else None
    return full / res, with_pop3


def targets(summaries, floor=None):
    res = []

    def get(row, inst, key):
        s = summaries.get(row, {}).get(inst)
        if not s:
            return None, None
        return s.get(key), s.get("errors")

    def absent(label, *rows):
        """No number: N/A when the row was not run, FAIL when it was (every
        run of it failed)."""
        ran = [r for r in rows if r in summaries]
        if ran:
            return (label, "FAIL", f"{', '.join(ran)}: no result (see the notes)")
        return (label, "N/A", f"{', '.join(rows)}: not measured")

    def ratio_target(label, row, pinst, tinst, key, factor, hib=True):
        pv, pe = get(row, pinst, key)
        tv, te = get(row, tinst, key)
        if pv is None or tv is None:
            return absent(label, row)
        r = pv / tv if hib else tv / pv
        ok = r >= factor and not pe
        return (label, "PASS" if ok else "FAIL",
                f"{row}: Postern {num(pv)} vs Dovecot tuned {num(tv)} = {times(r, factor)} (need {factor}x)"
                + (f"; {pe} errors" if pe else ""))

    def ceil_target(label, row, key, ceil_inst, frac):
        pv, pe = get(row, P, key)
        cv, _ = get(row, ceil_inst, key)
        if pv is None or not cv:
            return absent(label, row)
        ok = pv / cv >= frac and not pe
        return (label, "PASS" if ok else "FAIL",
                f"{row}: Postern {num(pv)} vs {ceil_inst} {num(cv)} = {100 * pv / cv:.0f}% (need {100 * frac:.0f}%)"
                + (f"; {pe} errors" if pe else ""))

    for c in (16, 256):
        res.append(ratio_target(f"login PLAIN c{c} >= 5x Dovecot tuned", f"login-plain-c{c}", P, T, "rate", 5))
        res.append(ceil_target(f"login PLAIN c{c} >= 60% of the protocol-free ceiling",
                               f"login-plain-c{c}", "rate", "lineserver", 0.60))
    for scheme in ("sha512", "yescrypt"):
        res.append(ratio_target(f"login {scheme} c16, caches on, >= 2x Dovecot tuned",
                                f"login-{scheme}-c16-cache", P, T, "rate", 2))
        res.append(ratio_target(f"login {scheme} c16, caches off, >= 2x Dovecot tuned",
                                f"login-{scheme}-c16-nocache", PN, TN, "rate", 2))
    for c in (1, 16):
        res.append(ratio_target(f"retr c{c} MB/s >= 3x Dovecot tuned", f"retr-c{c}", P, T, "mb_per_s", 3))
        res.append(ceil_target(f"retr c{c} MB/s >= 50% of the sendfile ceiling",
                               f"retr-c{c}", "mb_per_s", "sendfile", 0.50))
    for row, limit in (("idle-1000", 16), ("idle-10000", 16), ("idle-tls-1000", 64), ("idle-tls-10000", 64)):
        v, e = get(row, P, "kib_per_session")
        label = f"{row}: <= {limit} KiB PSS per session"
        if v is None:
            res.append(absent(label, row))
        else:
            res.append((label, "PASS" if v <= limit and not e else "FAIL",
                        f"{row}: {v:.1f} KiB/session" + (f"; {e} errors" if e else "")))
    for row in ("idle-10000",):
        v, e = get(row, P, "p99_ms")
        label = "10,000 sessions held with NOOP p99 < 50 ms"
        if v is None:
            res.append(absent(label, row))
        else:
            res.append((label, "PASS" if v < 50 and not e else "FAIL",
                        f"{row}: NOOP p99 {v:.2f} ms" + (f"; {e} errors" if e else "")))
    # The issue names no concurrency for the TLS targets: like the login
    # targets they are judged at 16 and, for the primary TLS 1.3 rows, at
    # 256 (handshake capacity with the machine saturated) as well.
    for tag, name, pinst, tinst, c in (("tls", "TLS 1.3", P, T, 16), ("tls", "TLS 1.3", P, T, 256),
                                       ("tls12", "TLS 1.2", P, T, 16),
                                       ("tls-ecdsa", "ECDSA P-256 certificate (secondary rows): TLS 1.3",
                                        PE, TE, 16)):
        res.append(ratio_target(f"{name} full handshakes c{c} >= 2x Dovecot tuned",
                                f"{tag}-full-c{c}", pinst, tinst, "rate", 2))
        fv, fe = get(f"{tag}-full-c{c}", pinst, "rate")
        rv, re_ = get(f"{tag}-resume-c{c}", pinst, "rate")
        label = f"{name} with resumption c{c} >= 3x our own full-handshake rate"
        # What the TLS library allows at best (bench/tls_floor, this run).
        version = ("TLSv1.2" if tag == "tls12" else "TLSv1.3") + (" ECDSA" if tag == "tls-ecdsa" else "")
        lib, top = floor_ceiling(floor, version, session_us(summaries, "login-plain-c16", P))
        bound = ""
        if lib is not None:
            bound = f"; OpenSSL alone allows {lib:.2f}x" + (
                f", {top:.2f}x with Postern's plain POP3 session on top" if top else "")
        if fv is None or rv is None:
            res.append(absent(label, f"{tag}-full-c{c}", f"{tag}-resume-c{c}"))
        else:
            res.append((label, "PASS" if rv >= 3 * fv and not re_ else "FAIL",
                        f"Postern resumed {num(rv)}/s vs full {num(fv)}/s = {times(rv / fv, 3)} (need 3x)"
                        + bound + (f"; {re_} errors" if re_ else "")))
    for key, limit, label in (("login_stat", 50, "bigbox second login+STAT < 50 ms"),
                              ("first_login_stat", 2000, "bigbox first login+STAT (cold index) < 2 s")):
        v, e = get("bigbox", P, key)
        if v is None:
            res.append(absent(label, "bigbox"))
        else:
            res.append((label, "PASS" if v < limit and not e else "FAIL",
                        f"bigbox: {v:.1f} ms" + (f"; {e} errors" if e else "")))
    return res


# --- the machine -------------------------------------------------------------------
def machine():
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    mem = first("/proc/meminfo", "MemTotal")
    try:
        mem = f"{int(mem.split()[0]) / 1024 / 1024:.1f} GiB"
    except ValueError:
        pass
    try:
        debian = open("/etc/debian_version").read().strip()
    except OSError:
        debian = "?"
    return {
        "cores (nproc)": str(os.cpu_count()),
        "CPU": first("/proc/cpuinfo", "model name"),
        "memory": mem,
        "kernel": platform.release(),
        "Debian": debian,
        "Dovecot": out(["dovecot", "--version"]),
        "OpenSSL": out(["openssl", "version"]),
        "Python": platform.python_version(),
        "RLIMIT_NOFILE (hard)": str(resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
    }


# --- main -------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="development: 1 run, short durations, fewer rows")
    ap.add_argument("--only", metavar="REGEX",
                    help="only rows whose name matches (re.search), e.g. 'login-plain|retr-c1'")
    ap.add_argument("--duration", type=float, help="seconds measured per run (default 5, quick 2)")
    ap.add_argument("--warmup", type=float, help="loadgen warm-up seconds per run (default 1)")
    ap.add_argument("--hold", type=float, help="idle: seconds of NOOPs (default: duration)")
    ap.add_argument("--attack-seconds", type=float,
                    help="attack rows: seconds of guessing, run once (default 120, quick 10)")
    ap.add_argument("--runs", type=int, help="runs per server and row (default 3, quick 1)")
    ap.add_argument("--fresh", action="store_true", help="rebuild bench/work from scratch")
    ap.add_argument("--skip-default", action="store_true", help="leave Dovecot default out")
    ap.add_argument("--slow", action="store_true",
                    help="run the very slow rows (Dovecot default idle 10,000) three times too")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm-up pass (development)")
    # Below the ephemeral range (32768-60999 on Linux), so that no client
    # connection on the machine can be holding one of these ports.
    ap.add_argument("--port-base", type=int, default=27000,
                    help="servers listen on PORT_BASE+10 .. PORT_BASE+81 (default 27000)")
    ap.add_argument("--loadgen", default=os.path.join(BUILD, "bench", "loadgen"))
    ap.add_argument("--results", help="where to write the report (default bench/RESULTS.md for a "
                                      "full run, bench/work/RESULTS.md with --quick or --only)")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    ap.add_argument("--setup-only", action="store_true",
                    help="build the data, start and warm the servers, stop")
    args = ap.parse_args()
    args.runs = args.runs or (1 if args.quick else 3)
    args.duration = args.duration or (2 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else 1
    args.hold = args.hold or (3 if args.quick else args.duration)
    args.attack_seconds = args.attack_seconds or (10 if args.quick else 120)
    cpu_mark = 90
    partial = args.quick or args.only
    raw_path = raw_results_path(partial)

    # --only picks from every row (with --quick's durations if given).
    if args.only:
        rows = [r for r in rows_all() if re.search(args.only, r["name"])]
    else:
        rows = [r for r in rows_all() if r["quick"] or not args.quick]
    if args.skip_default:
        for r in rows:
            r["servers"] = [s for s in r["servers"] if s != D]
    if args.list:
        for r in rows_all():
            print(f"{r['name']:28} {'quick' if r['quick'] else '':6} {', '.join(r['servers'])}"
                  + (f" + ceiling {r['ceiling']}" if r["ceiling"] else ""))
        return
    if not rows and not args.setup_only:
        die("no row matches --only")
    if os.geteuid() != 0:
        die("must run as root (creates the mail user, runs Dovecot)")
    for exe in ("posternd", "postern"):
        if not os.access(os.path.join(BUILD, exe), os.X_OK):
            die(f"build/{exe} is missing: run `make all` first")
    if not shutil.which("dovecot"):
        die("dovecot is not installed: scripts/deps bench")
    if not args.setup_only and not os.access(args.loadgen, os.X_OK):
        die(f"{args.loadgen} is missing: run `make bench-tools` first")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Ctrl-C stops everything even when started with SIGINT ignored (nohup, &).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    command = "/usr/bin/python3 bench/run.py" + "".join(" " + a for a in sys.argv[1:])
    if os.environ.get("MAKELEVEL"):
        command = f"make bench BENCH_ARGS='{' '.join(sys.argv[1:])}'  ({command})"
    started = datetime.datetime.now()
    b0 = machine_busy_ticks()
    time.sleep(2)
    quiet_pct = 100.0 * (machine_busy_ticks() - b0) / os.sysconf("SC_CLK_TCK") / 2
    if quiet_pct > 15:
        note(f"before the benchmark started, other processes used {quiet_pct:.0f}% of a core: "
             "the machine was not quiet, so the numbers are noisy")

    meta = setup_data(args.fresh)

    pb = args.port_base
    servers = {
        P: Postern(P, "Postern", pb + 10, pb + 11, cache=True),
        PN: Postern(PN, "Postern, auth cache off", pb + 20, pb + 21, cache=False),
        T: Dovecot(T, "Dovecot tuned", pb + 30, pb + 31, "dovecot-tuned.conf", "10M"),
        TN: Dovecot(TN, "Dovecot tuned, auth cache off", pb + 40, pb + 41, "dovecot-tuned.conf", "0"),
        PE: Postern(PE, "Postern, ECDSA certificate", pb + 12, pb + 13, cache=True, cert="ecdsa-"),
        TE: Dovecot(TE, "Dovecot tuned, ECDSA certificate", pb + 32, pb + 33,
                    "dovecot-tuned.conf", "10M", cert="ecdsa-"),
        D: Dovecot(D, "Dovecot default", pb + 50, pb + 51, "dovecot-default.conf"),
        PA: PosternAttack(PA, "Postern, default guard", pb + 80, pb + 81),
    }
    bench_dir = os.path.join(BUILD, "bench")
    retr_files = [os.path.join(POOL, "retr", f) for f in meta["retr_files"]]
    ceilings = {
        # As many threads as Postern has (threads = 0: one per core).
        "lineserver": Ceiling("lineserver", "line server", pb + 60,
                              [os.path.join(bench_dir, "lineserver"), "--host", HOST,
                               "--port", str(pb + 60), "--threads", str(os.cpu_count())]),
        "sendfile": Ceiling("sendfile", "sendfile", pb + 70,
                            [os.path.join(bench_dir, "sendfile_server"), "--host", HOST,
                             "--port", str(pb + 70), "--threads", str(os.cpu_count())]
                            + retr_files),
    }
    used = set()
    for r in rows:
        used.update(r["servers"])
    if args.setup_only:
        used = {P, T, D}
    used_ceilings = {r["ceiling"] for r in rows if r["ceiling"]}

    def cleanup():
        for s in list(servers.values()) + list(ceilings.values()):
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {s.name}: {e}")
        Procs.stop_all()
    atexit.register(cleanup)

    try:
        for name in [n for n in servers if n in used]:
            servers[name].configure()
            servers[name].start()
            log(f"started {name} (pid {servers[name].proc.pid}, ports {servers[name].port}/{servers[name].tls_port})")
        for name in used_ceilings:
            c = ceilings[name]
            if not os.access(c.argv[0], os.X_OK):
                note(f"{c.argv[0]} is missing: the {name} ceiling is not measured")
                continue
            c.configure()
            c.start()
            log(f"started {name} (pid {c.proc.pid}, port {c.port})")
        # The attack rows open no mailbox: nothing to warm for them.
        if not args.no_warm and any(r["mode"] != "guess" for r in rows):
            # Instances of one program share the index files in the
            # Maildirs, so one warm pass per program: Dovecot first (its
            # first session may move new/ to cur/), then Postern.
            dv = next((servers[n] for n in (T, TN, TE, D) if n in used), None)
            if dv:
                warm(dv)
            pv = next((servers[n] for n in (P, PN, PE) if n in used), None)
            if pv:
                warm(pv)
        if args.setup_only:
            return

        bench = Bench(args, meta)
        summaries, skipped, raw = {}, {}, {}
        for row in rows:
            results = {s: [] for s in row["servers"]}
            order = list(row["servers"])
            if row["ceiling"] and ceilings[row["ceiling"]].proc:
                order.append(row["ceiling"])
                results[row["ceiling"]] = []
            runs = 1 if row.get("once") else args.runs
            log(f"row {row['name']}: {', '.join(order)} x {runs}")
            for inst, why in row.get("skip", {}).items():
                if not args.skip_default or inst != D:
                    skipped.setdefault(row["name"], {})[inst] = why

            def measure_one(inst, row=row, results=results, run_i=0):
                srv = servers.get(inst) or ceilings[inst]
                try:
                    r = bench.measure(row, srv)
                except RuntimeError as e:
                    log(f"  {inst}: FAILED: {e}")
                    r = {"errors": 1, "failed": str(e)[:500], "cpu_pct": None}
                    if srv.proc is None or srv.proc.poll() is not None:
                        note(f"{inst} died during {row['name']}; restarting it\n{srv.tail(10)}")
                        srv.proc = None
                        srv.start()
                results[inst].append(r)
                k = METRICS[row["mode"]][0][0] if inst not in ceilings else CEILING_KEY[row["mode"]]
                log(f"  {inst} run {run_i + 1}: {k}={r.get(k)} errors={r.get('errors')} "
                    f"gen cpu={r.get('cpu_pct')}% server cpu={r.get('server_cpu_pct')}%")

            for run_i in range(runs):
                pending = []
                for inst in order:
                    slow = row.get("slow", {}).get(inst)
                    if slow and run_i > 0 and not args.slow:
                        skipped.setdefault(row["name"], {})[inst] = slow
                        continue
                    if slow and args.quick and not args.only:
                        skipped.setdefault(row["name"], {})[inst] = slow
                        continue
                    pending.append(inst)
                if row.get("parallel") and len(pending) > 1:
                    # Not shutdown(wait=True) on an error: the cleanup below
                    # stops the loadgens the threads are waiting for.
                    ex = concurrent.futures.ThreadPoolExecutor(len(pending))
                    try:
                        for fut in [ex.submit(measure_one, i, run_i=run_i) for i in pending]:
                            fut.result()
                    finally:
                        ex.shutdown(wait=False)
                else:
                    for inst in pending:
                        measure_one(inst, run_i=run_i)
            for inst, why in skipped.get(row["name"], {}).items():
                if results.get(inst):
                    note(f"{row['name']}: {inst} measured once ({why})")
                else:
                    note(f"{row['name']}: {inst} skipped ({why})")
            summaries[row["name"]] = summarise(row, results, cpu_mark)
            raw[row["name"]] = results
            for inst, s in summaries[row["name"]].items():
                if (row["mode"] not in ("idle", "bigbox", "guess")
                        and (s.get("other_cpu") or 0) > 25):
                    note(f"{row['name']}: {inst}: {s['other_cpu']:.0f}% of a core went to other "
                         "processes during the runs (median): that cell is noisy")
                if s["errors"]:
                    note(f"{row['name']}: {inst} had {s['errors']} errors; see "
                         + os.path.basename(raw_path))
    finally:
        cleanup()
        atexit.unregister(cleanup)

    # --- report ---
    floor = None
    if any(r["name"].startswith("tls") and "-resume-" in r["name"] for r in rows):
        floor = tls_floor(args.runs)
    lines = table_lines(rows, summaries, skipped, cpu_mark)
    tg = targets(summaries, floor)
    print()
    print("\n".join(lines))
    print()
    print(f"[N%] = the load generator's CPU (100 = one core); '!' = above {cpu_mark}%: "
          "the generator is the bottleneck there. E = errors. ↑/↓: higher/lower is better.")
    print()
    for label, verdict, detail in tg:
        print(f"{verdict:5} {label}: {detail}")
    attack = attack_lines(rows, raw, servers[PA].guard)
    if attack:
        print()
        print("Attacker guessing rate:")
        print("\n".join(attack))
    for n in NOTES:
        print("note: " + n)

    mach = machine()
    mach["CPU used by other processes at start"] = f"{quiet_pct:.0f}% of a core"
    raw_name = os.path.relpath(raw_path, TOP)
    with open(raw_path, "w") as f:
        json.dump({"command": command, "date": started.isoformat(timespec="seconds"),
                   "machine": mach, "args": vars(args), "summaries": summaries, "raw": raw,
                   "tls_floor": floor}, f, indent=1, default=str)
    out = args.results or (os.path.join(WORK, "RESULTS.md") if partial
                           else os.path.join(BENCH, "RESULTS.md"))
    md = ["# Postern vs Dovecot: POP3 benchmark results", ""]
    if partial:
        md += ["**A partial run (--quick or --only): not the full benchmark.**", ""]
    md += [f"- date: {started.strftime('%Y-%m-%d %H:%M')} (took "
           f"{(datetime.datetime.now() - started).total_seconds() / 60:.0f} min)",
           f"- command: `{command}`",
           f"- runs per server and row: {args.runs} (medians); duration {args.duration} s "
           f"after {args.warmup} s warm-up; idle hold {args.hold} s; attack rows once, "
           f"{args.attack_seconds:g} s each",
           f"- data: {accounts_text(meta)}; retr mailbox {meta['retr_messages']} messages, "
           f"{meta['retr_bytes'] / 1e6:.1f} MB (2 KB - 2 MB, LF line ends, dot lines); "
           f"bigbox {N_BIGBOX} messages of ~2 KB", ""]
    md += ["## Machine", ""] + [f"- {k}: {v}" for k, v in mach.items()] + [""]
    md += ["## Results", "",
           "Servers: Postern (`build/posternd`, `threads = 0`), Dovecot tuned "
           "(`bench/dovecot-tuned.conf`), Dovecot default (`bench/dovecot-default.conf`). "
           "Rows `-nocache` use the instances with the auth cache off (Dovecot default has "
           "none). Rows `tls-ecdsa-` use instances of Postern and Dovecot tuned with an "
           "ECDSA P-256 certificate instead of the RSA-2048 one of every other TLS row. "
           "P/tuned = Postern / Dovecot tuned; the ceilings are `lineserver` "
           "(protocol-free, for login) and `sendfile_server` (for retr).", "",
           "```"] + lines + ["```", "",
           f"[N%] = the load generator's own CPU (100 = one core); '!' = above {cpu_mark}%: "
           "there the generator, not the server, is the bottleneck. E = errors in that cell "
           f"(see {raw_name}). ↑/↓: higher/lower is better. Memory is the growth "
           "of PSS summed over all the server's processes between the server at rest and all "
           "sessions logged in, divided by the sessions. Where processes other than the server "
           "and the generator took more than a quarter of a core during a cell's runs, the "
           f"notes say so ({raw_name} has other_cpu_pct for every run).", ""]
    if attack:
        md += ["## Attacker guessing rate (issue 6)", ""] + attack + [""]
    if floor:
        md += floor_lines(floor, session_us(summaries, "login-plain-c16", P))
    md += ["## Targets (issue 4)", "", "| target | verdict | measured |", "|---|---|---|"]
    md += [f"| {label} | {verdict} | {detail} |" for label, verdict, detail in tg]
    if NOTES:
        md += ["", "## Notes", ""] + [f"- {n}" for n in NOTES]
    md += carried_analysis(out, started)
    with open(out, "w") as f:
        f.write("\n".join(md) + "\n")
    log(f"wrote {os.path.relpath(out, TOP)} and {os.path.relpath(raw_path, TOP)}")


def raw_results_path(partial):
    """Where a run's raw data goes: a partial run (--quick, --only) keeps
    its own file, so that it does not replace the data behind the full
    report that bench/RESULTS.md quotes."""
    return os.path.join(WORK, "results-partial.json" if partial else "results.json")


def tls_floor(runs):
    """bench/tls_floor with the certificates of the TLS rows (RSA, and
    ECDSA as "TLSv1.x ECDSA"), on the quiet machine after the servers have
    stopped: medians of runs."""
    exe = os.path.join(BUILD, "bench", "tls_floor")
    if not os.path.exists(exe):
        note("build/bench/tls_floor missing: no TLS library floor")
        return None
    got = {}
    for _ in range(max(runs, 1)):
        for prefix, suffix in (("", ""), ("ecdsa-", " ECDSA")):
            p = subprocess.run([exe, os.path.join(TLS_DIR, prefix + "cert.pem"),
                                os.path.join(TLS_DIR, prefix + "key.pem")],
                               capture_output=True, text=True)
            if p.returncode != 0:
                note(f"tls_floor failed: {p.stderr.strip()[:200]}")
                return None
            for line in p.stdout.splitlines():
                d = json.loads(line)
                got.setdefault(d["version"] + suffix, []).append(d)
    floor = {}
    for version, ds in got.items():
        floor[version] = {k: median([d[k] for d in ds]) for k in ds[0] if k != "version"}
    return floor


def floor_lines(floor, plain_us):
    out = ["## TLS library floor (bench/tls_floor)", "",
           "OpenSSL's handshakes alone, client and server in one thread over a memory BIO "
           "pair: no sockets, no event loop, no POP3. The server is set up as posternd "
           "(same suites, one ticket per full handshake, none on resumption), the client as "
           "the load generator; the RSA-2048 certificate of the TLS rows, and the ECDSA P-256 "
           "one of the tls-ecdsa rows. µs of CPU per handshake, median of the "
           "runs, measured after the servers stopped. The last column is the best "
           "resumed/full rate ratio any server on this OpenSSL could show: the library alone, "
           "then with Postern's whole plain login session (login-plain-c16, server and "
           f"generator: {plain_us:.0f} µs) added to both." if plain_us else
           "OpenSSL's handshakes alone (see bench/tls_floor.c).", "",
           "| version | full: server | full: client | resumed: server | resumed: client | "
           "best resumed/full |", "|---|---|---|---|---|---|"]
    for version in ("TLSv1.3", "TLSv1.2", "TLSv1.3 ECDSA", "TLSv1.2 ECDSA"):
        f = floor.get(version)
        if not f:
            continue
        lib, top = floor_ceiling(floor, version, plain_us)
        out.append(f"| {version} | {f['full_server_us']:.0f} | {f['full_client_us']:.0f} | "
                   f"{f['resumed_server_us']:.0f} | {f['resumed_client_us']:.0f} | "
                   f"{lib:.2f}x" + (f" / {top:.2f}x |" if top else " |"))
    return out + [""]


ANALYSIS_HEADING = "## Where the targets are missed"


def carried_analysis(path, started):
    """The hand-written analysis at the end of the old report, kept (it
    cannot be generated), under a line saying it predates this run."""
    try:
        with open(path) as f:
            old = f.read()
    except OSError:
        return []
    at = old.find("\n" + ANALYSIS_HEADING)
    if at < 0:
        return []
    section = old[at + 1:].rstrip("\n").split("\n")
    stamp = (f"(Carried over from the previous report by the run of "
             f"{started.strftime('%Y-%m-%d %H:%M')}: its figures may be from an older run.)")
    if len(section) > 2 and section[2].startswith("(Carried over"):
        section[2] = stamp
    else:
        section[1:1] = ["", stamp]
    return [""] + section


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        sys.exit(130)
