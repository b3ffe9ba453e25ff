#!/usr/bin/env bash
# Installs the npm tools the tests use (into tests/node_modules), only when missing.
set -euo pipefail
cd "$(dirname "$0")/../tests"
if [ -f package.json ]; then
  if [ ! -d node_modules ] || [ package.json -nt node_modules/.installed ]; then
    npm install --no-audit --no-fund --loglevel=error
    touch node_modules/.installed
  fi
fi
