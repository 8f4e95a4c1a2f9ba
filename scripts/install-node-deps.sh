#!/usr/bin/env bash
# Install the Node packages of the interop tests (tus-js-client) exactly as
# tests/interop/node/package-lock.json pins them, with `npm ci`.
#
# A fast no-op when node_modules already matches the lock file: the lock's
# SHA-256 is recorded in node_modules after a successful install and compared
# on the next run. Fails with a clear message when node or npm is missing.
set -euo pipefail

dir="$(cd "$(dirname "$0")/.." && pwd)/tests/interop/node"
lock="$dir/package-lock.json"
stamp="$dir/node_modules/.pytusd-lock-sha256"
min_node_major=18

die() {
    echo "install-node-deps: $*" >&2
    exit 1
}

command -v node >/dev/null 2>&1 || die "node is not installed (need Node.js >= $min_node_major; e.g. apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm is not installed (e.g. apt-get install npm)"

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt "$min_node_major" ]; then
    die "Node.js $(node --version) is too old: tus-js-client needs >= $min_node_major"
fi

[ -f "$lock" ] || die "missing $lock"

want="$(sha256sum "$lock" "$dir/package.json" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$dir/node_modules/tus-js-client/package.json" ]; then
    echo "install-node-deps: node_modules matches package-lock.json"
    exit 0
fi

echo "install-node-deps: npm ci in $dir"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $dir"
echo "$want" >"$stamp"
echo "install-node-deps: installed $(node -p "require('$dir/node_modules/tus-js-client/package.json').version" 2>/dev/null || echo '?') tus-js-client"
