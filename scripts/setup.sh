#!/usr/bin/env bash
# Installs what Paddock needs on Debian 12, idempotently: Debian packages that are missing, npm
# packages when package-lock.json changed, the native sandbox launcher and the compiled CLI (dist/)
# when their sources did.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "paddock setup: run as root (sandboxes need namespaces, mounts and cgroups)" >&2
    exit 1
  fi
}

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "paddock setup: Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# Debian packages: the launcher's build deps, btrfs for copy-on-write layers, attr for overlay
# xattrs, mmdebstrap for base: debian-12, bubblewrap as the benchmark baseline, and the real
# clients tests run inside sandboxes (busybox, sudo, perl: the exec guard's bypass tests in
# attacks/commands.md), and the services tests' servers (PostgreSQL 15 and Redis, run inside
# sandboxes on base: host from the host's /usr; the system services the packages set up are not used),
# chromium for the browser tests (test/browser: playwright-core drives Debian's build), and the
# database gateway's real clients and baseline (psycopg2 inside sandboxes, pgbouncer in bench/db).
packages=(gcc make libc6-dev libseccomp-dev pkg-config btrfs-progs attr mmdebstrap bubblewrap
  iproute2 nftables util-linux mount e2fsprogs passwd procps python3 git curl ca-certificates openssl tinyproxy
  busybox sudo perl postgresql postgresql-contrib redis-server chromium python3-psycopg2 pgbouncer runsc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  need_root
  echo "paddock setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Paddock runs PostgreSQL and Redis inside sandboxes only: keep the packages from starting
  # system-wide daemons (policy-rc.d exit 101 = "do not start"), unless the machine has a policy.
  policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_added=1
  fi
  apt-get update -qq
  status=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  if [ -n "$policy_added" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$status" -ne 0 ]; then exit "$status"; fi
fi

# npm packages: reinstall only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "paddock setup: installing npm packages" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

# The real e2b SDK releases (pinned in test/e2b-sdk/package.json) that the E2B-compatibility tests drive.
if [ ! -f test/e2b-sdk/node_modules/.package-lock.json ] || [ test/e2b-sdk/package-lock.json -nt test/e2b-sdk/node_modules/.package-lock.json ]; then
  echo "paddock setup: installing the e2b SDK test project" >&2
  npm ci --prefix test/e2b-sdk --no-audit --no-fund --loglevel=error
fi

# The real agent CLIs (pinned in src/agents/packages.ts) that the tests run in sandboxes, and that
# templates can install from here instead of the registry (--agent-packages). ~1.3 GB once.
node --import tsx scripts/agent-packages.ts vendor/agents

# The native launcher (make tracks its sources).
make -s -C native

# The compiled CLI that bin/paddock runs (scripts/build.mjs; only when a source is newer than it).
node scripts/build.mjs --if-stale

# The web UI that `paddock up` serves at / (scripts/build-web.mjs; only when a web/ source is newer).
node scripts/build-web.mjs --if-stale

# `paddock` on PATH.
if [ "$(id -u)" -eq 0 ] && [ "$(readlink -f /usr/local/bin/paddock 2>/dev/null)" != "$(pwd)/bin/paddock" ]; then
  ln -sf "$(pwd)/bin/paddock" /usr/local/bin/paddock
fi
