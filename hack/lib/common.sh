# shellcheck shell=bash
# Shared helpers for the hack/ scripts (sourced, not executed).
#
# Locations (all outside the checkout, so several checkouts and CI caches can share them):
#   ZYRA_K8S_CACHE     build cache root            default /var/cache/zyra-k8s
#                        kubernetes-<version>/bin/  kube-apiserver ... kubectl, kube-proxy, pause (static)
#                        src/                       Debian source package + build tree (reused by rebuilds)
#                        base/<suite>-<hash>.tar    debootstrap rootfs of the Python base image
#   ZYRA_CLUSTER_HOME  state of the running cluster default /var/lib/zyra-k8s/cluster
#   ZYRA_DOCKER_HOME   state of the private dockerd default /var/lib/zyra-k8s/docker

ZYRA_K8S_CACHE=${ZYRA_K8S_CACHE:-/var/cache/zyra-k8s}
ZYRA_CLUSTER_HOME=${ZYRA_CLUSTER_HOME:-/var/lib/zyra-k8s/cluster}
ZYRA_DOCKER_HOME=${ZYRA_DOCKER_HOME:-/var/lib/zyra-k8s/docker}

# Debian bookworm's kubernetes source package (the only Kubernetes reachable from here).
K8S_DEB_VERSION=${K8S_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}
K8S_VERSION=${K8S_VERSION:-1.20.2}
K8S_BIN=${K8S_BIN:-$ZYRA_K8S_CACHE/kubernetes-$K8S_VERSION/bin}
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

_t0=${_t0:-${EPOCHREALTIME/./}}
# log MSG: to stderr, with the seconds since the script started
log() {
  local dt=$(( (${EPOCHREALTIME/./} - _t0) / 100000 ))
  printf '[%4d.%ds] %s\n' $((dt / 10)) $((dt % 10)) "$*" >&2
}
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "must run as root (it starts containerd/kubelet, creates a bridge and mounts)"
}

# apt_ensure PKG...: install the packages that are missing; `apt-get update` only when an
# install fails for lack of package lists (fresh CI machine) or a package is unknown.
apt_ensure() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages like docker.io and containerd would start system daemons where an init system runs:
  # forbid that for the install (we start our own, private ones).
  local policy=/usr/sbin/policy-rc.d own_policy=
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy && own_policy=1; fi
  local rc=0
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  fi
  [ -z "$own_policy" ] || rm -f $policy
  [ $rc = 0 ] || die "apt-get install ${missing[*]} failed"
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.25 s.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { log "timed out after ${secs}s waiting for $what"; return 1; }
    sleep 0.25
  done
}

# pid_alive FILE: the pid recorded in FILE runs (and is not a zombie).
pid_alive() {
  local f=$1 pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  running "$pid"
}

# stop_pidfile FILE [TIMEOUT]: SIGTERM the recorded pid, wait, then SIGKILL. Removes FILE.
# Checks the pid's start time recorded beside it (FILE.start) so a recycled pid is never signalled.
stop_pidfile() {
  local f=$1 timeout=${2:-15} pid i
  [ -s "$f" ] || { rm -f "$f" "$f.start"; return 0; }
  pid=$(cat "$f")
  if [ -s "$f.start" ] && [ "$(proc_start "$pid")" != "$(cat "$f.start")" ]; then
    rm -f "$f" "$f.start"; return 0   # not ours any more
  fi
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 20; i++)); do running "$pid" || break; sleep 0.05; done
    if running "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  fi
  rm -f "$f" "$f.start"
  [ -z "${ZYRA_DEBUG:-}" ] || log "stopped $(basename "$f") (pid $pid)"
}

# running PID: exists and is not a zombie (an exited child not yet reaped by its parent or init).
# (fields counted after the ")" closing the command name, which may contain spaces)
running() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "${st%% *}" != Z ]; }

# proc_start PID: the process start time (field 22 of /proc/PID/stat), to recognise a pid later.
proc_start() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20 || true; }

# start_bg NAME LOGDIR PIDDIR CMD...: run CMD detached (own session), record pid + start time.
start_bg() {
  local name=$1 logdir=$2 piddir=$3; shift 3
  # fds 8/9 are the callers' flocks: a daemon must not inherit them.
  setsid "$@" >>"$logdir/$name.log" 2>&1 < /dev/null 8>&- 9>&- &
  local pid=$!
  echo "$pid" > "$piddir/$name"
  proc_start "$pid" > "$piddir/$name.start"
}
