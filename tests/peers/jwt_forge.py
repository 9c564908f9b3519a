"""Forges the tokens of the JWT attack suite with PyJWT and cryptography (the same
libraries an attacker would reach for): prints one JSON object with the provider's RSA
public key (PEM), its HMAC secret, and each token by name.

usage: jwt_forge.py ISSUER AUDIENCE
"""

import base64
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER, AUDIENCE = sys.argv[1], sys.argv[2]
HMAC = "hmac-secret-of-the-provider-0123456789"
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
public_pem = key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()
now = int(time.time())


def claims(**extra):
    c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "victim", "exp": now + 600}
    c.update(extra)
    return c


def rs(payload, headers=None, signer=key):
    return jwt.encode(payload, signer, algorithm="RS256", headers=headers)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs_raw(payload, secret, headers=None):
    """HS256 by hand: PyJWT refuses a PEM as an HMAC secret, an attacker would not."""
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "JWT", **(headers or {})}
    signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(sig)


attacker_jwk = json.loads(RSAAlgorithm.to_jwk(attacker.public_key()))
tokens = {
    "good_rs256": rs(claims(), {"kid": "main"}),
    "good_hs256": jwt.encode(claims(), HMAC, algorithm="HS256"),
    # RS256 -> HS256 confusion: the public key (which anyone may have) as the HMAC secret.
    "confusion_pem_as_secret": hs_raw(claims(), public_pem),
    "confusion_pem_as_secret_kid": hs_raw(claims(), public_pem, {"kid": "main"}),
    "kid_path": rs(claims(), {"kid": "../../../../../../etc/passwd"}),
    "kid_sql": rs(claims(), {"kid": "x' UNION SELECT 'hmac-secret-of-the-provider-0123456789' --"}),
    # Keys the token names itself: never fetched, never trusted.
    "jwk_embedded": rs(claims(), {"kid": "main", "jwk": attacker_jwk}, signer=attacker),
    "jku_remote": rs(claims(), {"kid": "main", "jku": "http://127.0.0.1:9/jwks.json"}, signer=attacker),
    "x5u_remote": rs(claims(), {"kid": "main", "x5u": "http://127.0.0.1:9/cert.pem"}, signer=attacker),
    # A critical header parameter the verifier does not understand: must be refused.
    "crit_unknown": rs(claims(), {"kid": "main", "crit": ["exp-policy"], "exp-policy": "lax"}),
    "oversized": rs(claims(pad="x" * 40000), {"kid": "main"}),
    # Clock skew (the provider allows 60 s): edges on either side.
    "expired_within_skew": rs(claims(exp=now - 30), {"kid": "main"}),
    "expired_past_skew": rs(claims(exp=now - 120), {"kid": "main"}),
    "nbf_within_skew": rs(claims(nbf=now + 30), {"kid": "main"}),
    "nbf_past_skew": rs(claims(nbf=now + 120), {"kid": "main"}),
    "no_exp": rs({"iss": ISSUER, "aud": AUDIENCE, "sub": "victim"}, {"kid": "main"}),
    "alg_none": b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(json.dumps(claims()).encode()) + ".",
    "alg_none_upper": b64(b'{"alg":"NONE","typ":"JWT"}') + "." + b64(json.dumps(claims()).encode()) + ".",
}
print(json.dumps({"public_pem": public_pem, "hmac": HMAC, "tokens": tokens}))
