"""A small OAuth-style token issuer for tests, on PyJWT and cryptography: it serves a JWKS
document, signs tokens on request, and rotates its RSA key on demand.

usage: jwt_issuer.py PORT ISSUER
  (over https when TLS_CERT and TLS_KEY name a certificate and key file)
  GET  /jwks                     the public keys now in use (RSA, EC P-256, Ed25519)
  POST /rotate                   a new RSA key replaces the old one in /jwks; {"kid": ...}
  GET  /token?alg=RS256&kid=&sub=&aud=&exp_in=&groups=a,b&scope=&secret=
                                 a signed JWT (RS256 with `kid`, default the current RSA key,
                                 retired keys too; ES256; EdDSA; HS256 with `secret`)
"""

import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PORT = int(sys.argv[1])
ISSUER = sys.argv[2]

lock = threading.Lock()
rsa_keys = {}  # kid -> private key (retired ones stay, for signing stale tokens)
state = {"current": None, "n": 0}
ec_key = ec.generate_private_key(ec.SECP256R1())
ed_key = ed25519.Ed25519PrivateKey.generate()


def rotate():
    with lock:
        state["n"] += 1
        kid = f"rsa-{state['n']}"
        rsa_keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        state["current"] = kid
        return kid


def jwks():
    with lock:
        kid = state["current"]
        keys = [dict(RSAAlgorithm.to_jwk(rsa_keys[kid].public_key(), as_dict=True), kid=kid, alg="RS256", use="sig")]
    keys.append(dict(ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), kid="ec-1", alg="ES256", use="sig"))
    keys.append(dict(OKPAlgorithm.to_jwk(ed_key.public_key(), as_dict=True), kid="ed-1", alg="EdDSA", use="sig"))
    return {"keys": keys}


def token(q):
    alg = q.get("alg", "RS256")
    now = int(time.time())
    claims = {
        "iss": q.get("iss", ISSUER),
        "sub": q.get("sub", "alice"),
        "iat": now,
        "exp": now + int(q.get("exp_in", "300")),
    }
    if q.get("aud"):
        claims["aud"] = q["aud"]
    if q.get("groups"):
        claims["groups"] = q["groups"].split(",")
    if q.get("scope"):
        claims["scope"] = q["scope"]
    if alg == "RS256":
        with lock:
            kid = q.get("kid") or state["current"]
            key = rsa_keys[kid]
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
    if alg == "ES256":
        return jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    if alg == "EdDSA":
        return jwt.encode(claims, ed_key, algorithm="EdDSA", headers={"kid": "ed-1"})
    if alg == "HS256":
        return jwt.encode(claims, q.get("secret", ""), algorithm="HS256")
    raise ValueError(f"unknown alg {alg}")


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/jwks":
            self.reply(200, jwks())
        elif url.path == "/token":
            try:
                self.reply(200, token(q), "text/plain")
            except Exception as e:  # a bad request from the test
                self.reply(400, {"error": str(e)})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        if urlparse(self.path).path == "/rotate":
            self.reply(200, {"kid": rotate()})
        else:
            self.reply(404, {"error": "not found"})

    def log_message(self, fmt, *args):
        sys.stderr.write("issuer: " + fmt % args + "\n")


if __name__ == "__main__":
    rotate()
    httpd = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    if os.environ.get("TLS_CERT"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.environ["TLS_CERT"], os.environ["TLS_KEY"])
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.serve_forever()
