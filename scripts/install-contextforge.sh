#!/usr/bin/env bash
# Installs the peer gateway the benchmark compares against into .deps/contextforge (quick
# when it is there already). ContextForge 1.1.0 needs Python 3.12, which Debian 12 does not
# have; 1.0.7.post20260921 is the newest release that installs on its Python 3.11.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.deps/contextforge"
want="mcp-contextforge-gateway==1.0.7.post20260921"
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$want" ]; then
  printf '[deps] pip install %s (peer gateway for make bench)\n' "$want"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$want"
  printf '%s' "$want" > "$venv/.stamp"
fi
printf '[deps] ContextForge: ok\n'
