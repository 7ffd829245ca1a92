"""
JWTs and JWKS files for the integration tests, made with the ``openssl``
command and the Python standard library only (no PyJWT, no cryptography).

    rsa = make_rsa_key(tmp_path, kid="rsa1")
    ec = make_ec_key(tmp_path, kid="ec1")
    write_jwks(tmp_path / "jwks.json", [rsa, ec])
    tok = make_jwt(rsa, "RS256", claims(email="alice@example.com"), kid="rsa1")

make_jwt() signs RS256 and ES256 with the key; it also builds the tokens
an attacker would send: alg "none" (empty signature) and HS256 keyed with
the public key's PEM text (the RSA/HMAC confusion). tamper() flips a byte
of a token's signature.
"""

import base64
import hashlib
import hmac
import json
import re
import subprocess
import time
from pathlib import Path

# SubjectPublicKeyInfo DER for a P-256 key, up to the 65-byte point.
_P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _openssl(*args, data=None):
    r = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {r.stderr.decode(errors='replace')}")
    return r.stdout


class Key:
    """A private key in a PEM file, its public half, and its JWK."""

    def __init__(self, path: Path, kty: str, kid=None, alg=None):
        self.path = Path(path)
        self.kty = kty  # "RSA" or "EC"
        self.kid = kid
        self.alg = alg  # written into the JWK when set
        self.pub_path = self.path.with_suffix(".pub.pem")
        _openssl("pkey", "-in", str(self.path), "-pubout", "-out", str(self.pub_path))

    def public_pem(self) -> bytes:
        return self.pub_path.read_bytes()

    def jwk(self) -> dict:
        if self.kty == "RSA":
            mod = _openssl("rsa", "-in", str(self.path), "-noout", "-modulus").decode()
            n = int(mod.strip().split("=", 1)[1], 16)
            text = _openssl("rsa", "-in", str(self.path), "-noout", "-text").decode()
            e = int(re.search(r"(?:publicExponent|Exponent): (\d+)", text).group(1))
            d = {
                "kty": "RSA",
                "n": b64url(n.to_bytes((n.bit_length() + 7) // 8, "big")),
                "e": b64url(e.to_bytes((e.bit_length() + 7) // 8, "big")),
            }
        else:
            der = _openssl("pkey", "-in", str(self.path), "-pubout", "-outform", "DER")
            if not der.startswith(_P256_SPKI_PREFIX) or len(der) != len(_P256_SPKI_PREFIX) + 65:
                raise ValueError(f"{self.path}: not an uncompressed P-256 public key")
            point = der[len(_P256_SPKI_PREFIX) :]
            d = {"kty": "EC", "crv": "P-256", "x": b64url(point[1:33]), "y": b64url(point[33:])}
        if self.kid is not None:
            d["kid"] = self.kid
        if self.alg is not None:
            d["alg"] = self.alg
        return d

    def sign_der(self, data: bytes) -> bytes:
        """SHA-256 signature as openssl makes it (PKCS#1 v1.5, or DER ECDSA)."""
        return _openssl("dgst", "-sha256", "-sign", str(self.path), data=data)

    def verify_der(self, data: bytes, sig: bytes, tmpdir: Path) -> bool:
        """openssl dgst -verify with the public key (used by the self-test)."""
        sig_path = Path(tmpdir) / "sig.bin"
        sig_path.write_bytes(sig)
        r = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", str(self.pub_path)]
            + ["-signature", str(sig_path)],
            input=data,
            capture_output=True,
            check=False,
        )
        return r.returncode == 0 and b"Verified OK" in r.stdout


def make_rsa_key(directory, kid=None, bits=2048, name=None, alg=None) -> Key:
    path = Path(directory) / (name or f"rsa-{kid or 'key'}.pem")
    _openssl(
        "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", str(path)
    )
    return Key(path, "RSA", kid, alg)


def make_ec_key(directory, kid=None, name=None, alg=None) -> Key:
    path = Path(directory) / (name or f"ec-{kid or 'key'}.pem")
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
    )
    return Key(path, "EC", kid, alg)


def jwks(keys, extra=()) -> dict:
    """The JWKS document; extra: more JWK dicts as they are (other key types...)."""
    return {"keys": [k.jwk() for k in keys] + list(extra)}


def write_jwks(path, keys, extra=()) -> Path:
    path = Path(path)
    path.write_text(json.dumps(jwks(keys, extra), indent=2) + "\n")
    return path


# --- DER ECDSA-Sig-Value <-> JWS R || S (RFC 7518 section 3.4) ---


def _der_len(buf, i):
    n = buf[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7F
    return int.from_bytes(buf[i + 1 : i + 1 + k], "big"), i + 1 + k


def der_to_raw(der: bytes, size=32) -> bytes:
    if der[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    _, i = _der_len(der, 1)
    out = b""
    for _ in range(2):
        if der[i] != 0x02:
            raise ValueError("not a DER INTEGER")
        n, i = _der_len(der, i + 1)
        out += int.from_bytes(der[i : i + n], "big").to_bytes(size, "big")
        i += n
    return out


def raw_to_der(raw: bytes) -> bytes:
    half = len(raw) // 2

    def integer(b):
        b = b.lstrip(b"\0") or b"\0"
        if b[0] & 0x80:
            b = b"\0" + b
        return b"\x02" + bytes([len(b)]) + b

    body = integer(raw[:half]) + integer(raw[half:])
    return b"\x30" + bytes([len(body)]) + body


# --- tokens ---


def claims(email=None, iss=None, aud=None, exp_in=300, nbf_in=None, now=None, **extra) -> dict:
    """Claims valid for exp_in seconds from now (negative: already expired)."""
    now = int(time.time()) if now is None else now
    c = {"iat": now, "exp": now + exp_in}
    if nbf_in is not None:
        c["nbf"] = now + nbf_in
    if iss is not None:
        c["iss"] = iss
    if aud is not None:
        c["aud"] = aud
    if email is not None:
        c["email"] = email
    c.update(extra)
    return c


def make_jwt(key, alg, claims, kid=None, header_extra=None) -> str:
    """
    A compact JWS. alg RS256 or ES256 signs with key (openssl dgst); "none"
    leaves the signature empty; HS256 uses the key's public PEM as the HMAC
    secret. kid is put in the header only when given; header_extra adds or
    overrides header members. claims may be a dict or ready JSON (str/bytes).
    """
    header = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    header.update(header_extra or {})
    if isinstance(claims, dict):
        payload = json.dumps(claims, separators=(",", ":")).encode()
    elif isinstance(claims, str):
        payload = claims.encode()
    else:
        payload = bytes(claims)
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(payload)
    ).encode("ascii")

    if alg == "none":
        sig = b""
    elif alg == "HS256":
        sig = hmac.new(key.public_pem(), signing_input, hashlib.sha256).digest()
    elif alg == "RS256":
        if key.kty != "RSA":
            raise ValueError("RS256 needs an RSA key")
        sig = key.sign_der(signing_input)
    elif alg == "ES256":
        if key.kty != "EC":
            raise ValueError("ES256 needs an EC key")
        sig = der_to_raw(key.sign_der(signing_input))
    else:
        raise ValueError(f"make_jwt cannot sign {alg}")
    return signing_input.decode("ascii") + "." + b64url(sig)


def tamper(token: str) -> str:
    """The token with one byte of its signature changed (still base64url)."""
    head, sig = token.rsplit(".", 1)
    raw = bytearray(b64url_decode(sig))
    raw[len(raw) // 2] ^= 0x01
    return head + "." + b64url(bytes(raw))


def split(token: str):
    """(header dict, claims dict, signature bytes, signing input bytes)."""
    h, p, s = token.split(".")
    return (
        json.loads(b64url_decode(h)),
        json.loads(b64url_decode(p)),
        b64url_decode(s),
        f"{h}.{p}".encode("ascii"),
    )
