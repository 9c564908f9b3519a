"""Makes what examples/tls needs in OUTDIR: a private CA (ca.crt), a certificate for
localhost (server.crt, server.key: the MCP server's, and the gateway's own listener can use
it too), a client certificate (gateway.crt, gateway.key: the gateway presents it to the MCP
server, and a client can present it to the gateway), upstreams.yaml, which declares that
server as an https Upstream trusting the CA and presenting the client certificate (mutual
TLS), and clients.yaml, a virtual server whose clients prove who they are with a client
certificate from the same CA.

usage: make_certs.py OUTDIR [PORT]      (PORT: where server.py listens, default 9443)
Uses the `cryptography` package (in .deps/venv after `make deps`).
"""

import datetime
import pathlib
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OUT = pathlib.Path(sys.argv[1])
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 9443
NOW = datetime.datetime.now(datetime.timezone.utc)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(subject, key, issuer, issuer_key, ca=False, usage=None, dns=()):
    b = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if dns:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def indent(text, n):
    return "".join(" " * n + line + "\n" for line in text.splitlines())


OUT.mkdir(parents=True, exist_ok=True)
ca_key = ec.generate_private_key(ec.SECP256R1())
ca = issue("example ca", ca_key, "example ca", ca_key, ca=True)
files = {"ca.crt": pem(ca)}
for who, usage, dns in [
    ("server", ExtendedKeyUsageOID.SERVER_AUTH, ["localhost"]),
    ("gateway", ExtendedKeyUsageOID.CLIENT_AUTH, []),
]:
    key = ec.generate_private_key(ec.SECP256R1())
    files[f"{who}.crt"] = pem(issue(who, key, "example ca", ca_key, usage=usage, dns=dns))
    files[f"{who}.key"] = key_pem(key)
for file, text in files.items():
    (OUT / file).write_text(text)
(OUT / "server.key").chmod(0o600)
(OUT / "gateway.key").chmod(0o600)

(OUT / "upstreams.yaml").write_text(
    f"""# Made by examples/tls/make_certs.py: an https upstream behind a private CA that
# wants a client certificate (mutual TLS).
apiVersion: switchboard.dev/v1
kind: Secret
metadata:
  name: gateway-certificate
spec:
  data:
    tls.crt: |
{indent(files["gateway.crt"], 6)}    tls.key: |
{indent(files["gateway.key"], 6)}---
apiVersion: switchboard.dev/v1
kind: Upstream
metadata:
  name: private
spec:
  mcp:
    url: https://localhost:{PORT}/mcp
  tls:
    caCert: |                          # trusted on top of the platform's roots
{indent(files["ca.crt"], 6)}    clientCert: {{secret: gateway-certificate, key: tls.crt}}
    clientKey: {{secret: gateway-certificate, key: tls.key}}
---
apiVersion: switchboard.dev/v1
kind: VirtualServer
metadata:
  name: secure
spec:
  upstreams:
    - upstream: private
      prefix: private_
"""
)
(OUT / "clients.yaml").write_text(
    f"""# Made by examples/tls/make_certs.py: clients of virtual server `mtls` show a
# certificate from the example CA (the data plane must serve TLS: --tls-cert/--tls-key).
apiVersion: switchboard.dev/v1
kind: AuthProvider
metadata:
  name: example-clients
spec:
  clientCertificate:
    caCert: |
{indent(files["ca.crt"], 6)}---
apiVersion: switchboard.dev/v1
kind: VirtualServer
metadata:
  name: mtls
spec:
  upstreams:
    - upstream: private
      prefix: private_
  authProvider: example-clients
  authorization:
    defaultAction: deny
    rules:
      - action: allow
        subjects: [gateway]            # the client certificate's common name
"""
)
print(f"wrote {', '.join(sorted(files))}, upstreams.yaml and clients.yaml to {OUT}")
