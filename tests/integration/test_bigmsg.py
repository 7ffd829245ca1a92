"""
Invariant 10: memory per connection is bounded whatever the message size.
A 50 MB message is retrieved byte-exact from the release build while its
RSS stays under 32 MiB, with a fast reader and with one that stalls.
"""

import base64
import hashlib
import random
import time

import pytest

from conftest import RELEASE_BIN, RssSampler, to_wire

RSS_LIMIT_KIB = 32 * 1024


@pytest.fixture(scope="module")
def big_message():
    """About 52 MB of base64 text (76-octet LF lines), with some lines
    starting with a dot; returns (message, sha256 of its wire form, wire length)."""
    raw = random.Random(50).randbytes(39_000_000)
    body = base64.encodebytes(raw).replace(b"\nA", b"\n.A")
    msg = b"From: big@example.org\nSubject: fifty megabytes\n\n" + body
    assert len(msg) > 50_000_000
    wire = to_wire(msg)
    return msg, hashlib.sha256(wire).hexdigest(), len(wire)


@pytest.fixture
def big_server(site, start_server, big_message):
    site.add_user("alice", "secret")
    site.add_user("bob", "hunter2")
    site.deliver("bob", b"Subject: small\n\nsmall\n")
    path = site.deliver("alice", big_message[0])
    try:
        yield start_server(binary=RELEASE_BIN)
    finally:
        path.unlink(missing_ok=True)


def vm_hwm_kib(pid):
    """The kernel's high-water mark of the process's RSS: the reader loop
    holds the GIL and may leave the sampler thread only a turn or two."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def check_body(body, big_message):
    _, digest, size = big_message
    assert len(body) == size
    assert hashlib.sha256(body).hexdigest() == digest


def test_big_message_fast_reader(big_server, big_message):
    srv = big_server
    c = srv.client(timeout=60)
    c.login("alice", "secret")  # the first open measures the message
    size = c.listing("LIST")[1]
    assert size == big_message[2]
    sampler = RssSampler(srv.pid)
    sampler.start()
    status = c.ok("RETR 1")
    body = c.read_multiline(timeout=60)
    peak = max(sampler.stop(), vm_hwm_kib(srv.pid))
    assert status == f"+OK {size} octets"
    check_body(body, big_message)
    del body
    assert peak < RSS_LIMIT_KIB, f"VmRSS peaked at {peak} KiB"
    assert sampler.samples, "RSS was not sampled"
    c.quit()


def test_big_message_slow_reader(big_server, big_message):
    srv = big_server
    c = srv.client(timeout=60)
    c.login("alice", "secret")
    sampler = RssSampler(srv.pid)
    sampler.start()
    c.send(b"RETR 1\r\n")
    # The client reads nothing for 2 s: the server must stop producing
    # (backpressure) rather than queue the message in memory, and keep
    # serving others.
    time.sleep(0.5)
    other = srv.client()
    other.login("bob", "hunter2")
    assert other.retr(1) == b"Subject: small\r\n\r\nsmall\r\n"
    other.quit()
    time.sleep(1.5)
    stalled_peak = max(sampler.samples)
    status = c.readline()
    assert status == b"+OK %d octets" % big_message[2]
    body = c.read_multiline(timeout=60)
    peak = sampler.stop()
    check_body(body, big_message)
    del body
    assert stalled_peak < RSS_LIMIT_KIB, f"VmRSS reached {stalled_peak} KiB while stalled"
    assert peak < RSS_LIMIT_KIB, f"VmRSS peaked at {peak} KiB"
    c.ok("NOOP")
    c.quit()
