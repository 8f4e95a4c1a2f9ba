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
# init scripts / systemd units the packages above may start on install.
SERVICES=(
    redis-server memcached nginx
    swift-proxy swift-object swift-object-replicator swift-object-auditor
    swift-object-updater swift-object-expirer swift-object-reconstructor
    swift-account swift-account-replicator swift-account-auditor swift-account-reaper
    swift-container swift-container-replicator swift-container-auditor
    swift-container-updater swift-container-sync swift-container-sharder
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
apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"

# Belt and braces: if a daemon got started or enabled anyway, stop and disable
# it so it cannot hold the ports or files the tests use.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    for svc in "${SERVICES[@]}"; do
        if systemctl list-unit-files "$svc.service" >/dev/null 2>&1; then
            systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
        fi
    done
else
    for svc in "${SERVICES[@]}"; do
        if [ -x "/etc/init.d/$svc" ]; then
            "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
        fi
    done
fi

echo "install-system-deps: done"
