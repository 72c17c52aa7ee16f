# shellcheck shell=bash
# A private dockerd for building images with no registry (sourced by base-image.sh, build-image.sh).
#
#   dockerd --bridge=none --iptables=false ... with data root, exec root, pidfile and socket under
#   $ZYRA_DOCKER_HOME (default /var/lib/zyra-k8s/docker): it never touches /var/lib/docker, the
#   host's firewall or a system dockerd. Builds use `--network host` (no bridge), so they reach
#   PyPI / deb.debian.org the way the host does.
#   Socket: unix://$ZYRA_DOCKER_HOME/docker.sock
#   (use it yourself: DOCKER_HOST=unix:///var/lib/zyra-k8s/docker/docker.sock /usr/bin/docker images)
#
# The client is Debian's /usr/bin/docker (docker.io 20.10, BuildKit built in): a newer docker CLI
# (28.x) wants the buildx plugin for BuildKit.

DOCKER_SOCK=$ZYRA_DOCKER_HOME/docker.sock
DOCKER_PIDFILE=$ZYRA_DOCKER_HOME/dockerd.pid
DOCKER_CLI=${DOCKER_CLI:-/usr/bin/docker}
_ZYRA_DOCKER_STARTED=

docker_() { DOCKER_HOST=unix://$DOCKER_SOCK DOCKER_BUILDKIT=1 "$DOCKER_CLI" "$@"; }

# docker_lock: one image build at a time per machine (parallel test workers would race to start
# the daemon and to stop it under each other). Held until the calling script exits.
docker_lock() {
  mkdir -p "$(dirname "$ZYRA_DOCKER_HOME")"
  exec 8>"$ZYRA_DOCKER_HOME.lock"
  flock -w "${ZYRA_LOCK_TIMEOUT:-3600}" 8 || die "another image build holds $ZYRA_DOCKER_HOME.lock"
}

docker_running() { pid_alive "$DOCKER_PIDFILE" && docker_ version >/dev/null 2>&1; }

# docker_up: start the private dockerd unless it runs. It is stopped again at exit by
# docker_down_if_started unless ZYRA_DOCKER_KEEP=1 (then: hack/docker.sh down).
docker_up() {
  docker_running && return 0
  need_root
  apt_ensure docker.io
  mkdir -p "$ZYRA_DOCKER_HOME/data" "$ZYRA_DOCKER_HOME/exec"
  # A crashed earlier dockerd: its pidfile blocks a start; its managed containerd may linger.
  pid_alive "$DOCKER_PIDFILE" || rm -f "$DOCKER_PIDFILE"
  stop_pidfile "$ZYRA_DOCKER_HOME/containerd.pid" 5
  rm -f "$DOCKER_SOCK"
  echo '{}' > "$ZYRA_DOCKER_HOME/daemon.json"
  log "starting private dockerd ($DOCKER_SOCK)"
  setsid dockerd --config-file "$ZYRA_DOCKER_HOME/daemon.json" \
      --data-root "$ZYRA_DOCKER_HOME/data" --exec-root "$ZYRA_DOCKER_HOME/exec" \
      --pidfile "$DOCKER_PIDFILE" -H "unix://$DOCKER_SOCK" \
      --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
      --userland-proxy=false --storage-driver=overlay2 --log-level=warn \
      >>"$ZYRA_DOCKER_HOME/dockerd.log" 2>&1 < /dev/null 8>&- 9>&- &
  local pid=$!
  wait_for 60 dockerd docker_ version || { tail -20 "$ZYRA_DOCKER_HOME/dockerd.log" >&2; die "dockerd did not start"; }
  echo "$pid" > "$DOCKER_PIDFILE"
  proc_start "$pid" > "$DOCKER_PIDFILE.start"
  # dockerd's own containerd, to stop it by pid if dockerd dies
  local cpid
  cpid=$(pgrep -P "$pid" -x containerd || true)
  [ -n "$cpid" ] && { echo "$cpid" > "$ZYRA_DOCKER_HOME/containerd.pid"; proc_start "$cpid" > "$ZYRA_DOCKER_HOME/containerd.pid.start"; }
  _ZYRA_DOCKER_STARTED=1
}

docker_down() {
  [ -d "$ZYRA_DOCKER_HOME" ] || return 0
  stop_pidfile "$DOCKER_PIDFILE" 20
  stop_pidfile "$ZYRA_DOCKER_HOME/containerd.pid" 5
  local m
  # overlay / netns mounts of build containers, if dockerd died mid-build
  findmnt -rn -o TARGET | awk -v d="$ZYRA_DOCKER_HOME/" 'index($0, d) == 1' | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  rm -f "$DOCKER_SOCK"
  # empty cgroups of build containers (rmdir fails on one in use, e.g. by a system dockerd)
  find /sys/fs/cgroup/*/docker/buildkit -depth -type d -exec rmdir {} + 2>/dev/null || true
  rmdir /sys/fs/cgroup/*/docker 2>/dev/null || true
}

docker_down_if_started() {
  if [ -n "$_ZYRA_DOCKER_STARTED" ] && [ "${ZYRA_DOCKER_KEEP:-0}" != 1 ]; then docker_down; fi
}
