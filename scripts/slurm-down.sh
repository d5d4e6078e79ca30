#!/usr/bin/env bash
# Stop the one-node Slurm cluster that scripts/slurm-up.sh started: slurmd, slurmctld and munged
# (munged stays up with --keep-munge). Its state, logs and configuration stay; slurm-up.sh starts it
# again.
set -euo pipefail

die() { echo "slurm-down: error: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root"
dir="${RNNLAB_SLURM_DIR:-/var/lib/rnnlab-slurm}"
keep_munge=0
for arg in "$@"; do
  case "$arg" in
    --keep-munge) keep_munge=1 ;;
    *) die "unknown argument '$arg' (only --keep-munge)" ;;
  esac
done

# Whether pid $1 is alive (a zombie waiting to be reaped counts as gone).
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# Stop the daemon whose pid is in $2 (name $1): SIGTERM, then wait up to 20 s, then SIGKILL.
stop() {
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || { echo "slurm-down: $name not running (no $pidfile)"; return 0; }
  pid=$(cat "$pidfile")
  # A stale pid file may name a pid that now runs another program.
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]; then
    echo "slurm-down: $name not running (stale $pidfile)"
    rm -f "$pidfile"
    return 0
  fi
  echo "slurm-down: stopping $name (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 200); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    echo "slurm-down: $name (pid $pid) still running after 20 s: killing it" >&2
    kill -KILL "$pid" || true
  fi
  rm -f "$pidfile"
}

stop slurmd "$dir/run/slurmd.pid"
stop slurmctld "$dir/run/slurmctld.pid"
[ "$keep_munge" = 1 ] || stop munged /run/munge/munged.pid
