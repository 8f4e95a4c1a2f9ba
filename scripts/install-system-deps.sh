#!/usr/bin/env bash
# Install the Debian packages the test suite needs to start real services
# (OpenStack Swift with s3api, memcached, Redis, nginx, Chromium).
#
# Idempotent and fast when everything is present: `apt-get update` only runs
# when a package is missing. The tests start their own private daemons on
# loopback, so the distro's auto-started services are kept from running.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
    swift swift-proxy swift-object swift-account swift-container
    memcached redis-server nginx chromium chromium-driver curl
)

is_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: all packages already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: not root, skipping; missing packages: ${missing[*]}" >&2
    echo "install-system-deps: run as root: sudo $0" >&2
    exit 0
fi

# Forbid maintainer scripts from starting daemons (invoke-rc.d and
# deb-systemd-invoke honour policy-rc.d), unless the machine already has one.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

echo "install-system-deps: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}"

# Belt and braces: if a daemon of a package we just installed got started or
# enabled anyway (no policy-rc.d support), stop and disable it so it cannot
# hold ports or files; the tests start private instances on free ports.
# Daemons of packages that were already installed are left alone.
services=()
for pkg in "${missing[@]}"; do
    case "$pkg" in
        redis-server | memcached | nginx) services+=("$pkg") ;;
        swift*)
            for script in /etc/init.d/"$pkg" /etc/init.d/"$pkg"-*; do
                if [ -e "$script" ]; then services+=("$(basename "$script")"); fi
            done
            ;;
    esac
done
for svc in "${services[@]}"; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$svc" ]; then
        "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done

echo "install-system-deps: done"
