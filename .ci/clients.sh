#!/bin/sh
# Installs the Node client library that tests/clients.rs drives, hot-shots, into .ci/node (beside
# the reference etsy statsd of .ci/etsy.sh), with its optional native unix-dgram module, which
# its Unix datagram transport needs (built by node-gyp: needs make and a C++ compiler).
# Idempotent: does nothing when that exact version is installed and unix-dgram loads.
# Needs node and npm on PATH and the npm registry reachable.
set -eu
REPO=$(cd "$(dirname "$0")/.." && pwd)
PREFIX="$REPO/.ci/node"
VERSION=17.1.1
PKG="$PREFIX/node_modules/hot-shots/package.json"
loads() { (cd "$PREFIX" && node -e "require('hot-shots'); require('unix-dgram')") >/dev/null 2>&1; }
if [ -f "$PKG" ] && grep -q "\"version\": *\"$VERSION\"" "$PKG" && loads; then
    echo "hot-shots $VERSION already installed in $PREFIX/node_modules/hot-shots"
    exit 0
fi
command -v node >/dev/null 2>&1 || { echo "clients.sh: node not found on PATH" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "clients.sh: npm not found on PATH" >&2; exit 1; }
mkdir -p "$PREFIX"
npm install --no-audit --no-fund --prefix "$PREFIX" "hot-shots@$VERSION"
# npm may skip an optional dependency's build script: build it explicitly when it did.
loads || npm rebuild --prefix "$PREFIX" unix-dgram
loads || { echo "clients.sh: hot-shots or its unix-dgram module does not load from $PREFIX" >&2; exit 1; }
echo "hot-shots $VERSION installed in $PREFIX/node_modules/hot-shots"
