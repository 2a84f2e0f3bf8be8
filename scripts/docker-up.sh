#!/usr/bin/env bash
# Make a Docker engine ready for the docker test leg (`make test-docker`) on a
# Debian machine that may have none: install the Debian packages when missing
# (docker.io, docker-compose, and debootstrap when the base image has to be
# made), start dockerd in the background with its pid recorded, wait until
# `docker info` answers, and create the base image debian:bookworm-slim offline
# (debootstrap from the Debian mirror apt already uses, then `docker import`)
# when it is absent, so the Dockerfiles of compose/ build without an image
# registry. The engine runs with --bridge=none --iptables=false: containers use
# host networking on 127.0.0.1, and nothing changes the host's firewall or
# routes. Idempotent: an engine that already answers is used as it is, and
# scripts/docker-down.sh stops only the engine this script started.
set -euo pipefail

PIDFILE=${DISCOVERY_DOCKERD_PIDFILE:-/var/run/discovery-dockerd.pid}
LOG=${DISCOVERY_DOCKERD_LOG:-/var/log/discovery-dockerd.log}
WAIT_SECONDS=${DISCOVERY_DOCKERD_WAIT:-60}
BASE_IMAGE=debian:bookworm-slim
SUITE=bookworm

say() { echo "docker-up: $*"; }
fail() {
  echo "docker-up: error: $*" >&2
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || fail "not root and no sudo: installing packages and starting dockerd need root"
  SUDO=sudo
else
  SUDO=
fi

compose_available() {
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1
}

apt_install() {
  say "installing Debian packages: $* (apt-get, as root)"
  export DEBIAN_FRONTEND=noninteractive
  # docker.io would start its service on install: the engine must be the one
  # started below, without the bridge and iptables rules of the default one.
  local guard=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  local status=0
  { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends "$@"; } || status=$?
  if [ -n "$guard" ]; then
    $SUDO rm -f /usr/sbin/policy-rc.d
  fi
  [ "$status" -eq 0 ] || fail "apt-get could not install $* (exit $status); see the apt output above"
}

# The pid of the engine this script started, if it still runs; a stale pid
# file (its process gone, or the pid reused by another program) is removed.
recorded_engine() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = dockerd ]; then
    echo "$pid"
    return 0
  fi
  say "removing the stale pid file $PIDFILE (pid '${pid}' is not a running dockerd)" >&2
  $SUDO rm -f "$PIDFILE"
  return 1
}

wait_for_engine() {
  local pid=$1 deadline=$((SECONDS + WAIT_SECONDS))
  until docker info >/dev/null 2>&1; do
    if [ ! -d "/proc/$pid" ] || [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
      tail -n 30 "$LOG" >&2 || true
      fail "dockerd (pid $pid) exited during start-up; the end of its log $LOG is above"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$LOG" >&2 || true
      fail "dockerd (pid $pid) did not answer \`docker info\` within ${WAIT_SECONDS} s; the end of its log $LOG is above"
    fi
    sleep 0.5
  done
}

# The Debian mirror apt is configured with (one-line or deb822 sources), so
# debootstrap fetches from the same place as every other package here.
debian_mirror() {
  local uri=
  if [ -n "${DISCOVERY_DEBIAN_MIRROR:-}" ]; then
    echo "$DISCOVERY_DEBIAN_MIRROR"
    return
  fi
  shopt -s nullglob
  local lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
  local sources=(/etc/apt/sources.list.d/*.sources)
  shopt -u nullglob
  if [ ${#lists[@]} -gt 0 ]; then
    uri=$(awk -v suite="$SUITE" '$1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "${lists[@]}" 2>/dev/null || true)
  fi
  if [ -z "$uri" ] && [ ${#sources[@]} -gt 0 ]; then
    uri=$(awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; suites = ""; types = ""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
          else if ($i ~ /^Suites:/) { suites = $i " " }
          else if ($i ~ /^Types:/) { types = $i " " }
        }
        if (types ~ / deb / && suites ~ (" " suite " ")) { split(uris, u, " "); print u[1]; exit }
      }' "${sources[@]}" 2>/dev/null || true)
  fi
  if [ -z "$uri" ]; then
    uri=http://deb.debian.org/debian
    say "no $SUITE mirror found in apt's sources; using $uri (set DISCOVERY_DEBIAN_MIRROR to choose)" >&2
  fi
  echo "$uri"
}

make_base_image() {
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local mirror rootfs
  mirror=$(debian_mirror)
  rootfs=$($SUDO mktemp -d /var/tmp/discovery-rootfs.XXXXXX)
  say "creating the base image $BASE_IMAGE without a registry: debootstrap --variant=minbase $SUITE from $mirror, then docker import"
  if ! $SUDO debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
    tail -n 30 "$rootfs.log" >&2 || true
    $SUDO rm -rf "$rootfs"
    fail "debootstrap could not build a $SUITE root file system from $mirror (log above, kept in $rootfs.log)"
  fi
  # The downloaded packages and indexes are not part of an image; apt-get update in a Dockerfile fetches fresh ones.
  $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  if ! $SUDO tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null; then
    $SUDO rm -rf "$rootfs"
    fail "docker import of the $SUITE root file system failed"
  fi
  $SUDO rm -rf "$rootfs" "$rootfs.log"
  say "base image $BASE_IMAGE created"
}

# 1. Packages.
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
compose_available || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ] && ! command -v debootstrap >/dev/null 2>&1; then
  # A machine without an engine has no base image either: install it in the same apt run.
  missing+=(debootstrap)
fi
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi
command -v docker >/dev/null 2>&1 || fail "no docker command after installing docker.io"
compose_available || fail "neither \`docker compose\` nor docker-compose is available after installing docker-compose"

# 2. The engine.
if docker info >/dev/null 2>&1; then
  say "a Docker engine already answers; using it"
elif pid=$(recorded_engine); then
  say "dockerd (pid $pid, started earlier by this script) is still starting; waiting for it"
  wait_for_engine "$pid"
else
  command -v dockerd >/dev/null 2>&1 || fail "dockerd is not installed (package docker.io)"
  say "starting dockerd in the background (--bridge=none --iptables=false; log $LOG, pid file $PIDFILE)"
  $SUDO mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOG")"
  # setsid: the engine outlives this script and a Ctrl-C in the terminal that ran it;
  # scripts/docker-down.sh stops it by its pid.
  $SUDO setsid dockerd --bridge=none --iptables=false --ip6tables=false --pidfile "$PIDFILE" \
    </dev/null >>"$LOG" 2>&1 &
  started=$!
  wait_for_engine "$started"
  pid=$(recorded_engine) || fail "dockerd answers but wrote no pid to $PIDFILE; stop it by hand (pid $started)"
  say "dockerd is up (pid $pid)"
  # Containers of an earlier run that ended without its cleanup (the engine was
  # stopped under them) are stopped; they hold nothing, remove them.
  leftovers=$(docker ps -a --filter label=com.docker.compose.project \
    --format '{{.ID}} {{.Label "com.docker.compose.project"}}' | awk '$2 ~ /^discovery-/ { print $1 }')
  if [ -n "$leftovers" ]; then
    say "removing containers left by an earlier run: $(echo "$leftovers" | wc -l)"
    # shellcheck disable=SC2086
    docker rm -f -v $leftovers >/dev/null
  fi
fi

# 3. The base image of compose/*.Dockerfile.
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "base image $BASE_IMAGE present"
else
  make_base_image
fi
