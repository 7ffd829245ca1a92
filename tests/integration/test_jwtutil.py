"""
Self-test of jwtutil.py: the tokens it makes verify with `openssl dgst
-verify`, and, independently of openssl, with the public numbers from the
JWKS it writes (RSA by modular exponentiation, ECDSA P-256 by textbook
arithmetic), so the JWKS and the signature encodings are right.
"""

import hashlib
import hmac
import json

import pytest

from jwtutil import (
    b64url_decode,
    claims,
    der_to_raw,
    make_ec_key,
    make_jwt,
    make_rsa_key,
    raw_to_der,
    split,
    tamper,
    write_jwks,
)

# SHA-256 DigestInfo prefix for PKCS#1 v1.5 (RFC 8017 section 9.2).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")

# P-256 (FIPS 186-4 D.1.2.3).
P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
A = P - 3
B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
G = (
    0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
)


def _add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % P == 0:
        return None
    if p1 == p2:
        lam = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return (x3, (lam * (x1 - x3) - y1) % P)


def _mul(k, pt):
    out = None
    while k:
        if k & 1:
            out = _add(out, pt)
        pt = _add(pt, pt)
        k >>= 1
    return out


def es256_verify(jwk, data, raw_sig):
    q = tuple(int.from_bytes(b64url_decode(jwk[c]), "big") for c in ("x", "y"))
    assert (q[1] ** 2 - q[0] ** 3 - A * q[0] - B) % P == 0, "JWK point not on P-256"
    r, s = int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big")
    if not (0 < r < N and 0 < s < N):
        return False
    z = int.from_bytes(hashlib.sha256(data).digest(), "big")
    w = pow(s, -1, N)
    pt = _add(_mul(z * w % N, G), _mul(r * w % N, q))
    return pt is not None and pt[0] % N == r


def rs256_verify(jwk, data, sig):
    n = int.from_bytes(b64url_decode(jwk["n"]), "big")
    e = int.from_bytes(b64url_decode(jwk["e"]), "big")
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    em = pow(int.from_bytes(sig, "big"), e, n).to_bytes(k, "big")
    t = SHA256_DIGEST_INFO + hashlib.sha256(data).digest()
    return em == b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("jwt")
    return d, make_rsa_key(d, kid="rsa1", alg="RS256"), make_ec_key(d, kid="ec1")


def test_jwks_document(keys):
    d, rsa, ec = keys
    path = write_jwks(d / "jwks.json", [rsa, ec], extra=[{"kty": "oct", "k": "c2VjcmV0"}])
    doc = json.loads(path.read_text())
    assert [k["kty"] for k in doc["keys"]] == ["RSA", "EC", "oct"]
    r, e = doc["keys"][0], doc["keys"][1]
    assert r["kid"] == "rsa1" and r["alg"] == "RS256" and r["e"] == "AQAB"
    assert len(b64url_decode(r["n"])) == 256 and b64url_decode(r["n"])[0] != 0
    assert e["kid"] == "ec1" and e["crv"] == "P-256" and "alg" not in e
    assert len(b64url_decode(e["x"])) == 32 and len(b64url_decode(e["y"])) == 32
    for k in doc["keys"][:2]:
        for name in ("n", "e", "x", "y"):
            if name in k:
                assert "=" not in k[name] and "+" not in k[name] and "/" not in k[name]


def test_rs256(keys):
    d, rsa, _ = keys
    tok = make_jwt(rsa, "RS256", claims(email="alice@example.com", aud="postern"), kid="rsa1")
    header, payload, sig, signing_input = split(tok)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "rsa1"}
    assert payload["email"] == "alice@example.com" and payload["aud"] == "postern"
    assert payload["exp"] - payload["iat"] == 300
    assert "=" not in tok
    assert rsa.verify_der(signing_input, sig, d)
    assert rs256_verify(rsa.jwk(), signing_input, sig)
    bad = split(tamper(tok))
    assert not rsa.verify_der(bad[3], bad[2], d)
    assert not rs256_verify(rsa.jwk(), bad[3], bad[2])


def test_es256(keys):
    d, _, ec = keys
    tok = make_jwt(ec, "ES256", claims(email="bob@example.com", exp_in=-10), header_extra={"x": 1})
    header, payload, sig, signing_input = split(tok)
    assert header == {"alg": "ES256", "typ": "JWT", "x": 1}
    assert payload["exp"] < payload["iat"]
    assert len(sig) == 64
    assert ec.verify_der(signing_input, raw_to_der(sig), d)
    assert es256_verify(ec.jwk(), signing_input, sig)
    assert der_to_raw(raw_to_der(sig)) == sig
    bad = split(tamper(tok))
    assert not es256_verify(ec.jwk(), bad[3], bad[2])
    assert not ec.verify_der(bad[3], raw_to_der(bad[2]), d)


def test_attack_tokens(keys):
    _, rsa, ec = keys
    tok = make_jwt(rsa, "none", claims(email="eve@example.com"))
    assert tok.endswith(".") and split(tok)[0]["alg"] == "none"
    tok = make_jwt(rsa, "HS256", claims(email="eve@example.com"), kid="rsa1")
    _, _, sig, signing_input = split(tok)
    assert sig == hmac.new(rsa.public_pem(), signing_input, hashlib.sha256).digest()
    with pytest.raises(ValueError):
        make_jwt(ec, "RS256", {})
    with pytest.raises(ValueError):
        make_jwt(rsa, "PS256", {})
    # Claims given as raw JSON are signed as they are (duplicates included).
    tok = make_jwt(ec, "ES256", '{"exp":1,"exp":2}')
    assert b64url_decode(tok.split(".")[1]) == b'{"exp":1,"exp":2}'


def test_der_conversion():
    # Leading zero bytes and high bits in R and S.
    raw = bytes(31) + b"\x01" + b"\x80" + bytes(31)
    der = raw_to_der(raw)
    assert der == bytes.fromhex("3026020101022100") + b"\x80" + bytes(31)
    assert der_to_raw(der) == raw
