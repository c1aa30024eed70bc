#!/bin/sh
# Installs the reference etsy statsd 0.9.0 (npm) into .ci/node, for tests/etsy_differential.rs.
# Idempotent: does nothing when that exact version is already installed.
# Needs node and npm on PATH and the npm registry reachable; nothing else.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
PREFIX="$REPO/.ci/node"
PKG="$PREFIX/node_modules/statsd/package.json"
if [ -f "$PKG" ] && grep -q '"version": *"0\.9\.0"' "$PKG"; then
    echo "etsy statsd 0.9.0 already installed in $PREFIX/node_modules/statsd"
    exit 0
fi
command -v node >/dev/null 2>&1 || { echo "etsy.sh: node not found on PATH" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "etsy.sh: npm not found on PATH" >&2; exit 1; }
mkdir -p "$PREFIX"
npm install --no-audit --no-fund --prefix "$PREFIX" statsd@0.9.0
test -f "$PREFIX/node_modules/statsd/stats.js" || { echo "etsy.sh: install did not produce stats.js" >&2; exit 1; }
echo "etsy statsd 0.9.0 installed in $PREFIX/node_modules/statsd"
