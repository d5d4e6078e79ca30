#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (for `rnnlab sweep --launcher slurm` and its test).
# Run as root on Debian; idempotent: installs `slurm-wlm` and `munge` when missing, creates the munge
# key when missing, starts munged, writes slurm.conf (only rewritten, and the daemons restarted, when
# its content changes), starts slurmctld and slurmd, and waits until `sinfo` shows the node idle.
# Stop with scripts/slurm-down.sh. State, spool, logs and pid files live in $RNNLAB_SLURM_DIR
# (default /var/lib/rnnlab-slurm); logs: $RNNLAB_SLURM_DIR/log/{slurmctld,slurmd}.log.
#
# Measured here (Debian 12, slurm 22.05.8, gVisor container without systemd, no accounting database):
# - Up: 23 s installing the packages, 33 s with apt-get update first (on a loaded machine), ~1-2 s
#   to (re)start the daemons, <0.5 s when already up. The packages' postinst creates a munge key; the script only makes one when it
#   is absent.
# - Submit: `sbatch --parsable --array=0-2 [-o DIR/%A_%a.log] SCRIPT` prints the array's JOBID. Each
#   task runs as the submitting user, in sbatch's working directory (--chdir=DIR to change; a
#   missing DIR is NOT an error: the task warns and runs in /tmp), with sbatch's whole environment
#   (--export=ALL is the default; --export=NONE still gives root's login PATH and HOME). Default
#   output: ./slurm-%A_%a.out; %A array job id, %a task index, %j the task's own job id. The output
#   folder must exist: otherwise the task fails at launch (JobState=FAILED Reason=JobLaunchFailure
#   ExitCode=0:53, no output at all).
# - Rejected at submit (sbatch exits 1): --mem above RealMemory, --cpus-per-task above CPUs (thanks
#   to EnforcePartLimits=ALL; without it the job pends forever with Reason=PartitionConfig), unknown
#   -p. Memory is not a consumable resource (CR_Core), so --mem never makes tasks wait for each
#   other.
# - Latency: a trivial job ends 0.3-1.1 s after submit; an array of 3 one-liners 0.9-4.2 s (an
#   array's first tasks start at the next scheduler pass, up to ~3 s after submit); a freed CPU gets
#   the next pending task within ~1 s (batch_sched_delay=0; Slurm's default 3 s made it ~3 s).
#   --time is enforced coarsely: a 1 s limit killed the job after ~60 s (JobState=TIMEOUT,
#   ExitCode=0:15).
# - Wait: poll `squeue -h -j JOBID` until it prints nothing (exit 0 while the job is known). For a
#   job id Slurm no longer knows (MinJobAge after the end) squeue and scontrol exit 1 with "Invalid
#   job id specified". `squeue -h -r -j JOBID -o '%K %T'` gives one line per task (index, state);
#   pending tasks otherwise show as one line `JOBID_[0-4]`. `sbatch --wait` also works (exit code =
#   the highest task exit code) but polls slowly (it returned after 10 s for an array that ended
#   after 5 s).
# - Exit codes: `scontrol show job -o JOBID`, one line per task that has started (tasks still
#   pending share one line `ArrayTaskId=3-4`), with ArrayTaskId=, JobState= (COMPLETED, FAILED,
#   CANCELLED, TIMEOUT) and ExitCode=code:signal; kept MinJobAge=600 s after the end. The array's
#   own JOBID names its last task (`JobId=4 ArrayTaskId=4`), the others get new ids. Durable record
#   without a database: jobcomp/filetxt appends one line per finished task (ArrayJobId=,
#   ArrayTaskId=, JobState=, ExitCode=) to $RNNLAB_SLURM_DIR/log/jobcomp.log.
# - `sacct` prints "Slurm accounting storage is disabled" (and exits 0): no slurmdbd here.
# - No cgroup.conf is needed: with proctrack/linuxproc and task/none slurmd never touches cgroups.
#   slurmd logs harmless errors about the missing PMIx library and the hwloc topology.
# - Job ids survive restarts (state in $RNNLAB_SLURM_DIR/state) and start again at 1 when it is
#   removed.
set -euo pipefail

die() { echo "slurm-up: error: $*" >&2; exit 1; }
say() { echo "slurm-up: $*"; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts daemons)"
start=$(date +%s)
dir="${RNNLAB_SLURM_DIR:-/var/lib/rnnlab-slurm}"
host="$(hostname -s)"
[ -n "$host" ] || die "hostname -s printed nothing"

# One run at a time (several developers may call this at once).
install -d -m 0755 "$dir" "$dir/run"
# (The daemons are started with fd 9 closed: they would hold the lock for their lifetime.)
exec 9>"$dir/run/slurm-up.lock"
flock -w 300 9 || die "another slurm-up.sh holds $dir/run/slurm-up.lock for more than 300 s"

# --- packages ---------------------------------------------------------------------------------
missing=()
for pkg in munge slurm-wlm; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log=/tmp/slurm-up.apt.log
  say "installing ${missing[*]} (log: $log)"
  # Keep the packages' maintainer scripts from starting daemons (no init system here; we start them).
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  trap '[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  : >"$log"
  apt_update() { apt-get update -q >>"$log" 2>&1 || die "apt-get update failed (see $log)"; }
  apt_install() { apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1; }
  # Update first when there are no package lists, else only when installing from the old ones fails.
  lists=/var/lib/apt/lists
  eval "$(apt-config shell lists Dir::State::Lists/d)"
  compgen -G "$lists/*_Packages*" >/dev/null || apt_update
  if ! apt_install; then
    apt_update
    apt_install || die "apt-get install ${missing[*]} failed (see $log)"
  fi
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi
for bin in munged munge unmunge slurmctld slurmd sinfo scontrol sbatch squeue; do
  command -v "$bin" >/dev/null || die "$bin not found after installing munge and slurm-wlm"
done

# --- munge ------------------------------------------------------------------------------------
getent passwd munge >/dev/null || die "user munge missing (the munge package creates it)"
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  say "creating /etc/munge/munge.key"
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile=/etc/munge/munge.key --force
  else
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "starting munged"
  runuser -u munge -- munged 9>&- || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null ||
    die "munge credentials do not round-trip (see /var/log/munge/munged.log)"
fi

# --- slurm.conf -------------------------------------------------------------------------------
# Where this build reads its configuration: the path compiled into libslurm (/etc/slurm on bookworm,
# /etc/slurm-llnl on older Debian).
conf=""
for lib in /usr/lib/*/slurm-wlm/libslurmfull.so /usr/lib/*/slurm/libslurmfull.so \
  /usr/lib/*/libslurm.so.*; do
  [ -e "$lib" ] || continue
  conf=$(grep -a -o -m1 '/etc/slurm[-a-z]*/slurm\.conf' "$lib" | head -n1 || true)
  [ -n "$conf" ] && break
done
if [ -z "$conf" ]; then
  if [ -d /etc/slurm ]; then conf=/etc/slurm/slurm.conf; else conf=/etc/slurm-llnl/slurm.conf; fi
fi
marker="# Written by rnnlab scripts/slurm-up.sh"
if [ -e "$conf" ] && ! head -n1 "$conf" | grep -qF "$marker"; then
  die "$conf exists and was not written by this script; move it away to let this script manage Slurm"
fi

# CPUs and their layout as slurmd finds them (`slurmd -C`), so it does not report a mismatch; nproc
# when that fails.
hw=$(slurmd -C 2>/dev/null | head -n1 | tr ' ' '\n' |
  grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+$' | tr '\n' ' ' || true)
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
if [ -z "$cpus" ]; then
  cpus=$(nproc)
  hw="CPUs=$cpus "
fi
mem_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
# Leave 10 % to the system: slurmd drains a node whose RealMemory is above what it finds.
real_mem=$((mem_mb * 9 / 10))
install -d -m 0755 "$dir/state" "$dir/spool" "$dir/spool/slurmd" "$dir/log" "$(dirname "$conf")"

new_conf=$(cat <<EOF
$marker: one node, root only, no database. Rewritten when it changes.
ClusterName=rnnlab
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
MpiDefault=none
ReturnToService=2
EnforcePartLimits=ALL
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 ${hw}RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)

if [ ! -e "$conf" ] || [ "$(cat "$conf")" != "$new_conf" ]; then
  printf '%s\n' "$new_conf" >"$conf.tmp" && mv "$conf.tmp" "$conf"
  say "wrote $conf"
fi

# --- daemons ----------------------------------------------------------------------------------
# A pid file names a live daemon only when that pid runs that program (pids are reused after a restart).
running() { [ -s "$2" ] && [ "$(cat "/proc/$(cat "$2")/comm" 2>/dev/null)" = "$1" ]; }
if { running slurmctld "$dir/run/slurmctld.pid" || running slurmd "$dir/run/slurmd.pid"; } &&
  ! cmp -s "$conf" "$dir/run/started-with.conf"; then
  say "the daemons run with another configuration: restarting them"
  bash "$(dirname "$0")/slurm-down.sh" --keep-munge 9>&-
fi
cp "$conf" "$dir/run/started-with.conf"
if ! running slurmctld "$dir/run/slurmctld.pid"; then
  say "starting slurmctld"
  slurmctld 9>&- || die "slurmctld did not start (see $dir/log/slurmctld.log)"
fi
slurmd_since=""
if ! running slurmd "$dir/run/slurmd.pid"; then
  say "starting slurmd"
  slurmd_since=$(date +%Y-%m-%dT%H:%M:%S)
  slurmd 9>&- || die "slurmd did not start (see $dir/log/slurmd.log)"
fi

# --- wait for the node ------------------------------------------------------------------------
# Idle, and registered by the slurmd started above (a restarted slurmctld first shows the node's saved
# state).
registered() {
  [ -z "$slurmd_since" ] && return 0
  local t
  t=$(scontrol show node "$host" 2>/dev/null | grep -o 'SlurmdStartTime=[0-9T:-]*' | cut -d= -f2)
  [[ -n "$t" && ! "$t" < "$slurmd_since" ]]
}
deadline=$(($(date +%s) + ${RNNLAB_SLURM_WAIT:-60}))
resumed=0
while :; do
  state=$(sinfo -h -n "$host" -o '%T' 2>/dev/null | head -n1 || true)
  case "$state" in
    idle | mixed | allocated | completing) registered && break ;;
    down* | drain* | fail*)
      if [ "$resumed" = 0 ]; then
        say "node $host is $state ($(sinfo -h -n "$host" -o '%E' 2>/dev/null)): resuming it"
        scontrol update nodename="$host" state=resume || true
        resumed=1
      fi
      ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "slurm-up: error: node $host is '${state:-unknown}' after ${RNNLAB_SLURM_WAIT:-60} s" >&2
    sinfo -N -l >&2 || true
    sinfo -R >&2 || true
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
  fi
  sleep 0.5
done
say "node $host is $state (cpus $cpus, RealMemory $real_mem MB, $conf) after $(($(date +%s) - start)) s"
