#!/usr/bin/env bash
# Install Azurite (the Azure Storage emulator of the Azure store's tests) exactly as
# tests/services/azurite/package-lock.json pins it, with `npm ci`.
#
# A fast no-op when node_modules already matches the lock file (its SHA-256 is recorded in
# node_modules after a successful install). Fails with a clear message when node or npm is missing.
set -euo pipefail

dir="$(cd "$(dirname "$0")/.." && pwd)/tests/services/azurite"
lock="$dir/package-lock.json"
stamp="$dir/node_modules/.pytusd-lock-sha256"

die() {
    echo "install-azurite: $*" >&2
    exit 1
}

command -v node >/dev/null 2>&1 || die "node is not installed (need Node.js >= 18; e.g. apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm is not installed (e.g. apt-get install npm)"
[ -f "$lock" ] || die "missing $lock"

want="$(sha256sum "$lock" "$dir/package.json" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$dir/node_modules/.bin/azurite-blob" ]; then
    echo "install-azurite: node_modules matches package-lock.json"
    exit 0
fi

echo "install-azurite: npm ci in $dir"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in $dir"
echo "$want" >"$stamp"
echo "install-azurite: installed azurite $(node -p "require('$dir/node_modules/azurite/package.json').version" 2>/dev/null || echo '?')"
