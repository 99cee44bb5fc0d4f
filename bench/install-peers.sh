#!/bin/sh
# Installs the peer proxies and load tools the bench compares sluice with (Debian/Ubuntu, as root).
# Idempotent: installs only what is missing. The harness runs its own instances on its own ports,
# so the system services the packages start are stopped and kept from holding ports.
set -eu

need=""
for pkg in squid-openssl tinyproxy wrk hey curl; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    need="$need $pkg"
  fi
done

if [ -n "$need" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $need
fi

# The packages start squid (:3128) and tinyproxy (:8888) as system services; the bench does not
# use them, and a running system squid would share the cache/pid defaults.
for svc in squid tinyproxy; do
  if command -v service >/dev/null 2>&1; then
    service "$svc" stop >/dev/null 2>&1 || true
  fi
  for pidfile in /run/$svc.pid /run/$svc/$svc.pid; do
    # only a live process of that very program: a stale pid file may name someone else by now
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$svc" ]; then kill "$pid" || true; fi
    fi
  done
done

echo "peers installed:"
squid -v | head -1
tinyproxy -v 2>&1 | head -1
wrk -v 2>&1 | head -1 || true
command -v hey
