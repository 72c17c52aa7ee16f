#!/usr/bin/env bash
# A real single-node Kubernetes (v1.20.2 from Debian bookworm's `kubernetes` source package) for the
# project's tests, on a machine with no Docker engine and no registry: etcd + kube-apiserver +
# kube-controller-manager + kube-scheduler + kubelet + kube-proxy (iptables) + containerd/runc + CNI
# bridge. Everything comes from Debian's archive. Needs root.
#
#   hack/local-cluster.sh build     install Debian packages, build the binaries once into the cache
#                                   ($ZYRA_K8S_CACHE/kubernetes-<version>/bin; ~10 min cold on 2 cores)
#   hack/local-cluster.sh up        start (or reuse a healthy running) cluster; builds if needed; cleans
#                                   leftovers of an interrupted earlier run first; waits for node Ready
#                                   and a pod to run. Prints the kubeconfig path on stdout.
#   hack/local-cluster.sh down      delete pods, stop every process by its recorded pid, unmount, remove
#                                   the bridge, iptables chains and all state (the build cache stays)
#   hack/local-cluster.sh status    what runs; exit 0 only when the cluster is healthy
#   hack/local-cluster.sh env       print `export KUBECONFIG=...`   (kubeconfig: print the path only)
#   hack/local-cluster.sh kubectl ARGS...   the cluster's own kubectl (1.20.2) with its kubeconfig
#
# Settings (environment): ZYRA_K8S_CACHE (/var/cache/zyra-k8s), ZYRA_CLUSTER_HOME
# (/var/lib/zyra-k8s/cluster). The cluster's addresses are fixed: bridge k8slocal0 10.244.0.1/24 (pods
# 10.244.0.0/24; pods reach host servers bound to 10.244.0.1), services 10.96.0.0/16, apiserver
# https://10.244.0.1:6443 (and 127.0.0.1:6443), etcd 127.0.0.1:2379. See docs/local-cluster.md.
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$HACK_DIR/lib/common.sh"

BUILD_PKGS=(golang-go golang-github-modern-go-reflect2-dev make rsync gcc libc6-dev dpkg-dev
            debian-archive-keyring ca-certificates)
RUN_PKGS=(etcd-server containerd runc containernetworking-plugins iptables iproute2 openssl
          util-linux mount procps curl nftables)

# ---------------------------------------------------------------------------------------------- build
build_ok() {
  local b
  for b in "${K8S_BINARIES[@]}" pause; do [ -x "$K8S_BIN/$b" ] || return 1; done
  [ -f "$K8S_BIN/.complete" ]
}

cmd_build() {
  need_root
  apt_ensure "${BUILD_PKGS[@]}" "${RUN_PKGS[@]}"
  if build_ok && [ "${1:-}" != --force ]; then log "binaries cached in $K8S_BIN"; return 0; fi
  local src=$ZYRA_K8S_CACHE/src apt=$ZYRA_K8S_CACHE/src/apt tree
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
  tree=$src/kubernetes-$K8S_VERSION
  if [ ! -f "$tree/.patched" ]; then
    local orig=$src/kubernetes_${K8S_DEB_VERSION%-*}.orig.tar.gz
    if [ ! -f "$orig" ]; then
      # deb-src through a private apt config: /etc/apt stays untouched.
      log "downloading Debian source package kubernetes=$K8S_DEB_VERSION"
      {
        echo 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main'
        echo 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main'
      } > "$apt/sources.list"
      local o=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
               -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1
               -o APT::Sandbox::User=root)
      apt-get "${o[@]}" update -qq
      (cd "$src" && apt-get "${o[@]}" source -qq --download-only "kubernetes=$K8S_DEB_VERSION")
    fi
    log "unpacking $orig"
    rm -rf "$tree" "$tree.tmp" && mkdir -p "$tree.tmp"
    tar -C "$tree.tmp" --strip-components=1 -xzf "$orig"
    # The vendored github.com/modern-go/reflect2 v1.0.1 crashes the apiserver under Go >= 1.18
    # (fatal error in reflect2.(*UnsafeMapType).UnsafeIterate on the first custom resource).
    # Debian's golang-github-modern-go-reflect2-dev 1.0.2 is API-compatible and fixed.
    local r2=$tree.tmp/vendor/github.com/modern-go/reflect2
    rm -rf "$r2" && mkdir -p "$r2"
    cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$r2/"
    touch "$tree.tmp/.patched"
    mv "$tree.tmp" "$tree"
  fi
  log "building kubernetes $K8S_VERSION (${K8S_BINARIES[*]}) in $tree: ~10 min cold on 2 cores"
  # GOCACHE under the cache root: an interrupted or forced rebuild reuses compiled packages.
  (cd "$tree" && HOME=$ZYRA_K8S_CACHE GOCACHE=$ZYRA_K8S_CACHE/gocache GOFLAGS=-mod=vendor \
     CGO_ENABLED=0 GOPROXY=off KUBE_VERBOSE=0 \
     make WHAT="$(printf 'cmd/%s ' "${K8S_BINARIES[@]}")" >"$src/build.log" 2>&1) \
    || { tail -40 "$src/build.log" >&2; die "kubernetes build failed (log: $src/build.log)"; }
  local out=$K8S_BIN.tmp
  rm -rf "$out" && mkdir -p "$out"
  local b
  for b in "${K8S_BINARIES[@]}"; do cp "$tree/_output/bin/$b" "$out/"; done
  # The pod sandbox ("pause") binary, static, packed into an image at `up` (no registry needed).
  gcc -Os -static -o "$out/pause" "$tree/build/pause/linux/pause.c"
  strip "$out/pause" 2>/dev/null || true
  echo "kubernetes $K8S_VERSION (Debian $K8S_DEB_VERSION), built $(date -u +%FT%TZ) with $(go version)" > "$out/.complete"
  rm -rf "$K8S_BIN" && mv "$out" "$K8S_BIN"
  log "binaries in $K8S_BIN ($(du -sh "$K8S_BIN" | cut -f1))"
}

# ---------------------------------------------------------------------------------------------- up
H=$ZYRA_CLUSTER_HOME
KUBECONFIG_FILE=$H/kubeconfig
BRIDGE=k8slocal0
BRIDGE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
NODE_NAME=zyra-local
CNI_NETWORK=zyra-local
PAUSE_IMAGE=registry.k8s.io/pause:3.6   # containerd 1.6's default sandbox_image name
# Host settings the kubelet, kube-proxy and the CNI bridge plugin change; restored by `down`.
SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom
         kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Stop order (reverse of start).
COMPONENTS=(kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver containerd etcd)

kc() { "$K8S_BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE" --request-timeout=10s "$@"; }
ctr_() { ctr --address "$H/ctr/containerd.sock" --namespace k8s.io "$@"; }

lock() {
  mkdir -p "$(dirname "$H")"
  exec 9>"$H.lock"
  # long: a parallel caller may be doing a cold build (pytest-xdist workers all call `up`)
  flock -w "${ZYRA_LOCK_TIMEOUT:-3600}" 9 || die "another hack/local-cluster.sh holds $H.lock"
}

apiserver_ready() { [ "$(kc get --raw /readyz 2>/dev/null)" = ok ]; }

node_ready() {
  kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

all_running() {
  local c
  for c in "${COMPONENTS[@]}"; do pid_alive "$H/pids/$c" || return 1; done
}

healthy() {
  all_running || return 1
  [ -f "$KUBECONFIG_FILE" ] || return 1
  apiserver_ready && node_ready
}

gen_pki() {
  local p=$H/pki; mkdir -p "$p"
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  # A CA and an apiserver serving certificate valid for every name a client uses: the host
  # (10.244.0.1, 127.0.0.1), pods (the `kubernetes` Service 10.96.0.1 and its DNS names).
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$p/ca.key" -out "$p/ca.crt" -days 3650 \
      -subj /CN=zyra-local-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$p/apiserver.key" -out "$p/apiserver.csr" \
      -subj /CN=kube-apiserver 2>/dev/null
  printf '%s\n' "subjectAltName=IP:$BRIDGE_IP,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost" \
      'extendedKeyUsage=serverAuth' 'keyUsage=critical,digitalSignature,keyEncipherment' > "$p/apiserver.ext"
  openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
      -days 3650 -extfile "$p/apiserver.ext" -out "$p/apiserver.crt" 2>/dev/null
  # Static token of the admin user (system:masters). A throwaway cluster on a private address.
  echo "zyra-local-admin-token,admin,admin,system:masters" > "$p/tokens.csv"
  cat > "$KUBECONFIG_FILE" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: zyra-local
  cluster:
    server: https://$BRIDGE_IP:6443
    certificate-authority-data: $(base64 -w0 < "$p/ca.crt")
users:
- name: admin
  user:
    token: zyra-local-admin-token
contexts:
- name: zyra-local
  context: {cluster: zyra-local, user: admin}
current-context: zyra-local
KCFG
  chmod 600 "$KUBECONFIG_FILE"
}

# A one-layer OCI archive holding the static pause binary, imported as the sandbox image:
# no registry, no image builder needed.
import_pause() {
  local d=$H/pause-oci; rm -rf "$d"; mkdir -p "$d/blobs/sha256" "$d/root"
  cp "$K8S_BIN/pause" "$d/root/pause"
  tar -C "$d/root" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$d/layer.tar" pause
  local ld ls cd cs md ms
  ld=$(sha256sum "$d/layer.tar" | cut -d' ' -f1); ls=$(stat -c %s "$d/layer.tar"); mv "$d/layer.tar" "$d/blobs/sha256/$ld"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$ld" > "$d/c"
  cd=$(sha256sum "$d/c" | cut -d' ' -f1); cs=$(stat -c %s "$d/c"); mv "$d/c" "$d/blobs/sha256/$cd"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$cd" "$cs" "$ld" "$ls" > "$d/m"
  md=$(sha256sum "$d/m" | cut -d' ' -f1); ms=$(stat -c %s "$d/m"); mv "$d/m" "$d/blobs/sha256/$md"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' "$md" "$ms" "$PAUSE_IMAGE" "${PAUSE_IMAGE##*:}" > "$d/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$d/oci-layout"
  rm -rf "$d/root"
  tar -C "$d" -cf "$H/pause.tar" oci-layout index.json blobs
  ctr_ images import "$H/pause.tar" >/dev/null
  ctr_ images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
  rm -rf "$d" "$H/pause.tar"
}

write_configs() {
  mkdir -p "$H/ctr/root" "$H/ctr/state" "$H/ctr/runc" "$H/ctr/opt" "$H/cni/net.d" "$H/cni/ipam" \
           "$H/kubelet/root" "$H/kubelet/pki"
  # Minimal containerd config: everything (root, state, sockets, runc root, network namespaces)
  # under $H so that `down` finds and removes all of it.
  cat > "$H/ctr/config.toml" <<TOML
version = 2
root = "$H/ctr/root"
state = "$H/ctr/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$H/ctr/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$H/ctr/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$H/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$H/ctr/runc"
        SystemdCgroup = false
TOML
  # hairpinMode: a pod can reach itself through its own Service. ipMasq off: pods talk to this host
  # (10.244.0.1) and each other only; nothing is NATed to the outside.
  cat > "$H/cni/net.d/10-zyra-local.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "$CNI_NETWORK", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$H/cni/ipam",
            "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
JSON
  # No cluster DNS: pods get a resolver that answers nothing rather than the host's.
  echo "nameserver 127.0.0.1" > "$H/kubelet/resolv.conf"
  cat > "$H/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
resolvConf: $H/kubelet/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
# status is computed every 2 s but posted only when it changes (or every 5 min): the node turns
# Ready ~8 s sooner than with the default 10 s.
nodeStatusUpdateFrequency: 2s
nodeStatusReportFrequency: 5m
YAML
}

bridge_up() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
  ip addr show dev "$BRIDGE" | grep -q "inet $BRIDGE_IP/" || ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

save_sysctls() {
  [ -f "$H/sysctl.orig" ] && return 0   # keep the values from before an interrupted run
  local k
  for k in "${SYSCTLS[@]}"; do
    [ -e "/proc/sys/${k//./\/}" ] && echo "$k=$(cat "/proc/sys/${k//./\/}")"
  done > "$H/sysctl.orig"
  # iptables-nft tables that exist before (the kubelet creates filter/nat/mangle; `down` removes
  # the ones it created once they are empty again)
  { iptables-save 2>/dev/null | sed -n 's/^\*/ip /p'; ip6tables-save 2>/dev/null | sed -n 's/^\*/ip6 /p'; } \
    > "$H/iptables.tables.orig" || true
}

dump_logs() {
  local f
  for f in "$H"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "----- tail of $f" >&2; tail -15 "$f" >&2
  done
}

cmd_up() {
  need_root
  lock
  # All processes alive: give a busy cluster time to answer before replacing it under its users.
  if all_running && wait_for 30 "the running cluster to be healthy" healthy; then
    log "cluster already running and healthy"; echo "$KUBECONFIG_FILE"; return 0
  fi
  build_ok || cmd_build
  apt_ensure "${RUN_PKGS[@]}"
  if [ -d "$H" ]; then log "cleaning leftovers of a previous run in $H"; teardown quiet; fi
  mkdir -p "$H/pids" "$H/logs"
  # A leftover from outside (an older state dir, someone else's cluster) would make ports clash.
  local port
  for port in 2379 2380 6443 10248 10250 10256 10257 10259; do
    if ss -Htln "sport = :$port" | grep -q .; then
      die "TCP port $port is already in use (ss -tlnp 'sport = :$port'); another cluster running?"
    fi
  done
  save_sysctls
  trap 'log "up failed; component logs in $H/logs (the next up or down cleans up)"; dump_logs' ERR

  log "bridge $BRIDGE $BRIDGE_IP/24, certificates, configs"
  bridge_up
  gen_pki
  write_configs

  start_bg etcd "$H/logs" "$H/pids" etcd --name zyra-local --data-dir "$H/etcd" \
      --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
      --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
      --initial-cluster zyra-local=http://127.0.0.1:2380 --listen-metrics-urls= --log-level warn
  start_bg containerd "$H/logs" "$H/pids" containerd --config "$H/ctr/config.toml"
  wait_for 30 containerd ctr_ version
  import_pause
  wait_for 30 etcd curl -sf http://127.0.0.1:2379/health
  log "etcd, containerd up"

  local P=$H/pki
  start_bg kube-apiserver "$H/logs" "$H/pids" "$K8S_BIN/kube-apiserver" \
      --etcd-servers=http://127.0.0.1:2379 --bind-address=$BRIDGE_IP --advertise-address=$BRIDGE_IP \
      --secure-port=6443 --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
      --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv" --authorization-mode=Node,RBAC \
      --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
      --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=$SERVICE_CIDR \
      --kubelet-preferred-address-types=InternalIP --allow-privileged=true \
      --enable-admission-plugins=NodeRestriction --profiling=false --v=1
  wait_for 90 "kube-apiserver /readyz" apiserver_ready
  log "kube-apiserver ready"
  local common=(--kubeconfig="$KUBECONFIG_FILE" --authentication-kubeconfig="$KUBECONFIG_FILE"
                --authorization-kubeconfig="$KUBECONFIG_FILE" --bind-address=127.0.0.1 --leader-elect=false)
  start_bg kube-controller-manager "$H/logs" "$H/pids" "$K8S_BIN/kube-controller-manager" "${common[@]}" \
      --secure-port=10257 --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
      --use-service-account-credentials=false --controllers='*,-nodeipam' --profiling=false
  start_bg kube-scheduler "$H/logs" "$H/pids" "$K8S_BIN/kube-scheduler" "${common[@]}" --secure-port=10259
  start_bg kubelet "$H/logs" "$H/pids" "$K8S_BIN/kubelet" --kubeconfig="$KUBECONFIG_FILE" \
      --config="$H/kubelet/config.yaml" --container-runtime=remote \
      --container-runtime-endpoint="unix://$H/ctr/containerd.sock" --root-dir="$H/kubelet/root" \
      --cert-dir="$H/kubelet/pki" --hostname-override=$NODE_NAME --node-ip=$BRIDGE_IP \
      --pod-infra-container-image=$PAUSE_IMAGE
  start_bg kube-proxy "$H/logs" "$H/pids" "$K8S_BIN/kube-proxy" --kubeconfig="$KUBECONFIG_FILE" \
      --hostname-override=$NODE_NAME --proxy-mode=iptables --cluster-cidr=$POD_CIDR \
      --healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 \
      --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0
  wait_for 90 "node $NODE_NAME Ready" node_ready
  log "node $NODE_NAME Ready"
  wait_for 60 "default service account" kc -n default get serviceaccount default
  smoke_pod
  trap - ERR
  log "cluster up: export KUBECONFIG=$KUBECONFIG_FILE"
  echo "$KUBECONFIG_FILE"
}

# A pod runs (sandbox, CNI, container, status back through the API server) before `up` says yes.
smoke_pod() {
  kc -n kube-system delete pod zyra-local-smoke --ignore-not-found --grace-period=0 --force >/dev/null 2>&1 || true
  kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: zyra-local-smoke, namespace: kube-system}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  containers:
  - {name: pause, image: $PAUSE_IMAGE, imagePullPolicy: Never}
YAML
  kc -n kube-system wait --for=condition=Ready pod/zyra-local-smoke --timeout=90s >/dev/null
  log "a pod ran ($(kc -n kube-system get pod zyra-local-smoke -o jsonpath='{.status.podIP}'))"
  kc -n kube-system delete pod zyra-local-smoke --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
}

# --------------------------------------------------------------------------------------------- down
# teardown [quiet]: idempotent; works on a healthy cluster, a half-started one and a crashed one.
teardown() {
  local quiet=${1:-}
  # Without a state dir, only a leftover bridge says a cluster of ours ran here (do not touch the
  # iptables of a machine that never ran one).
  if [ ! -d "$H" ]; then
    if ip link show "$BRIDGE" >/dev/null 2>&1; then cleanup_host; fi
    return 0
  fi
  # 1. No new pods: stop the controllers, then delete every pod through the API so the kubelet
  #    stops its containers and the CNI plugin releases the network (best effort, bounded).
  stop_pidfile "$H/pids/kube-controller-manager"
  stop_pidfile "$H/pids/kube-scheduler"
  if pid_alive "$H/pids/kube-apiserver" && pid_alive "$H/pids/kubelet" && apiserver_ready; then
    [ -n "$quiet" ] || log "deleting all pods"
    kc delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 120; i++)); do
      [ -z "$(ctr_ tasks ls -q 2>/dev/null | grep -v '^$' || true)" ] && break
      sleep 0.25
    done
  fi
  # 2. Stop every process by its recorded pid.
  [ -n "$quiet" ] || log "stopping processes"
  stop_pidfile "$H/pids/kube-proxy"
  stop_pidfile "$H/pids/kubelet"
  # Containers the kubelet did not stop (crashed cluster): kill them through runc.
  kill_containers
  stop_pidfile "$H/pids/kube-apiserver"
  stop_pidfile "$H/pids/containerd"
  kill_shims
  stop_pidfile "$H/pids/etcd"
  # 3. Host state: mounts, network namespaces, bridge, iptables, sysctls.
  [ -n "$quiet" ] || log "unmounting, removing bridge, iptables chains"
  umount_under "$H"
  cleanup_host
  remove_empty_tables
  restore_sysctls
  # empty cgroups containerd made for its k8s.io namespace (rmdir fails while one is in use)
  find /sys/fs/cgroup/*/k8s.io -depth -type d -exec rmdir {} + 2>/dev/null || true
  # 4. All state goes; the build cache stays.
  rm -rf "$H"
  [ -n "$quiet" ] || log "cluster down; state removed"
}

kill_containers() {
  local root id
  [ -d "$H/ctr/runc" ] || return 0
  for root in "$H"/ctr/runc/*/; do
    [ -d "$root" ] || continue
    for id in $(runc --root "$root" list -q 2>/dev/null); do
      runc --root "$root" kill "$id" KILL 2>/dev/null || true
    done
    sleep 0.3
    for id in $(runc --root "$root" list -q 2>/dev/null); do
      runc --root "$root" delete --force "$id" 2>/dev/null || true
    done
  done
}

# containerd-shim-runc-v2 processes of OUR containerd (found by the socket path in their command
# line): they outlive containerd by design.
kill_shims() {
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $H/ctr/containerd.sock" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
}

umount_under() {
  local dir=$1 m i
  [ -d "$dir" ] || return 0
  for ((i = 0; i < 5; i++)); do
    # deepest first; a mount may hide others, hence the loop
    mapfile -t ms < <(findmnt -rn -o TARGET | awk -v d="$dir" 'index($0, d) == 1' | sort -r)
    [ ${#ms[@]} -eq 0 ] && return 0
    for m in "${ms[@]}"; do
      m=$(printf '%b' "$m")   # findmnt -r escapes spaces as \x20
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
}

# Host-wide leftovers: the bridge, iptables chains of kubelet/kube-proxy, CNI result cache.
cleanup_host() {
  if pgrep -f "^$K8S_BIN/kube-proxy" >/dev/null 2>&1 || pgrep -f "^$K8S_BIN/kubelet" >/dev/null 2>&1; then
    log "warning: a kubelet/kube-proxy from $K8S_BIN still runs (not recorded in $H/pids): left alone"
    return 0
  fi
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" 2>/dev/null || true
  if [ -x "$K8S_BIN/kube-proxy" ]; then
    "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true   # exits 1 for lack of ipset; rules go
  fi
  local ipt
  for ipt in iptables ip6tables; do
    command -v $ipt >/dev/null || continue
    remove_kube_chains $ipt
  done
  rm -f /var/lib/cni/results/$CNI_NETWORK-* 2>/dev/null || true
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
}

# Delete the KUBE-* chains (kubelet: KUBE-FIREWALL, KUBE-MARK-*, KUBE-POSTROUTING, KUBE-KUBELET-CANARY;
# kube-proxy: KUBE-SERVICES, KUBE-SVC-*, ...; KUBE-PROXY-CANARY) and the rules that jump to them.
remove_kube_chains() {
  local ipt=$1 t rule chain
  for t in filter nat mangle; do
    "$ipt-save" -t "$t" >/dev/null 2>&1 || continue
    while read -r rule; do
      [ -n "$rule" ] || continue
      eval "$ipt -t $t ${rule/-A /-D }" 2>/dev/null || true
    done < <("$ipt-save" -t "$t" | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-')
    for chain in $("$ipt-save" -t "$t" | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
      "$ipt" -t "$t" -F "$chain" 2>/dev/null || true
    done
    for chain in $("$ipt-save" -t "$t" | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
      "$ipt" -t "$t" -X "$chain" 2>/dev/null || true
    done
  done
}

# iptables-nft leaves the tables it was asked about behind (empty, policy ACCEPT): remove those that
# did not exist before `up` and hold no rule and no chain of their own.
remove_empty_tables() {
  [ -f "$H/iptables.tables.orig" ] && command -v nft >/dev/null || return 0
  local fam t save
  for fam in ip ip6; do
    save=iptables-save; [ $fam = ip6 ] && save=ip6tables-save
    command -v $save >/dev/null || continue
    for t in filter nat mangle raw security; do
      grep -qx "$fam $t" "$H/iptables.tables.orig" && continue
      "$save" -t $t 2>/dev/null | grep -q "^\*$t" || continue
      "$save" -t $t | grep -qE '^-A |^:[^ ]+ (-|DROP|REJECT)' && continue
      "$save" -t $t | grep -E '^:' | grep -vqE '^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ' && continue
      nft delete table $fam $t 2>/dev/null || true
    done
  done
}

restore_sysctls() {
  [ -f "$H/sysctl.orig" ] || return 0
  local kv
  while read -r kv; do
    [ -n "$kv" ] && sysctl -q -w "$kv" >/dev/null 2>&1 || true
  done < "$H/sysctl.orig"
}

cmd_down() {
  need_root
  lock
  teardown
}

cmd_status() {
  local c rc=0
  for c in etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    if pid_alive "$H/pids/$c"; then printf '  %-24s running (pid %s)\n' "$c" "$(cat "$H/pids/$c")"
    else printf '  %-24s not running\n' "$c"; rc=1; fi
  done
  if [ "$rc" = 0 ] && healthy; then
    echo "cluster healthy: KUBECONFIG=$KUBECONFIG_FILE"
    kc get nodes -o wide 2>/dev/null || true
  else
    echo "cluster not running (state dir: $H)"; rc=1
  fi
  return $rc
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  up|start) cmd_up ;;
  down|stop) cmd_down ;;
  status) cmd_status ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_FILE" ;;
  kubeconfig) echo "$KUBECONFIG_FILE" ;;
  kubectl) shift; exec "$K8S_BIN/kubectl" --kubeconfig="$KUBECONFIG_FILE" "$@" ;;
  *) echo "usage: $0 build [--force]|up|down|status|env|kubeconfig|kubectl ARGS" >&2; exit 2 ;;
esac
