#!/usr/bin/env bash
# Stop the Docker engine that scripts/docker-up.sh started, by the pid it
# recorded, and wait until it has exited. An engine this script did not start
# (no pid file: a system service, or one started by hand) is left alone.
set -euo pipefail

PIDFILE=${DISCOVERY_DOCKERD_PIDFILE:-/var/run/discovery-dockerd.pid}
WAIT_SECONDS=${DISCOVERY_DOCKERD_WAIT:-60}

say() { echo "docker-down: $*"; }
fail() {
  echo "docker-down: error: $*" >&2
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

alive() {
  [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

if [ ! -f "$PIDFILE" ]; then
  say "no engine started by scripts/docker-up.sh ($PIDFILE is absent): nothing to stop"
  exit 0
fi
pid=$(cat "$PIDFILE" 2>/dev/null || true)
if [ -z "$pid" ] || ! alive "$pid" || [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" != dockerd ]; then
  say "removing the stale pid file $PIDFILE (pid '${pid}' is not a running dockerd)"
  $SUDO rm -f "$PIDFILE"
  exit 0
fi

say "stopping dockerd (pid $pid)"
$SUDO kill -TERM "$pid"
deadline=$((SECONDS + WAIT_SECONDS))
while alive "$pid"; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    say "dockerd (pid $pid) still runs ${WAIT_SECONDS} s after SIGTERM; sending SIGKILL"
    $SUDO kill -KILL "$pid" 2>/dev/null || true
    sleep 1
    alive "$pid" && fail "dockerd (pid $pid) survived SIGKILL"
    break
  fi
  sleep 0.2
done
$SUDO rm -f "$PIDFILE"
say "dockerd stopped"
