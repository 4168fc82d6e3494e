#!/usr/bin/env bash
# A one-node cluster on 127.0.0.1, on top of scripts/controlplane.sh: kube-controller-manager (the
# garbage collector, Deployment/ReplicaSet/ServiceAccount controllers), kube-scheduler, Debian's
# containerd + runc and a kubelet, all built from the Go module proxy and cached like the apiserver.
# Follows docs/node.md beside the shared docs. Pods of this node use host networking and talk to
# 127.0.0.1 only; any other pod gets a network namespace with nothing but loopback.
#
# Usage: node.sh build | install | start | stop | env | run CMD...
#   build    kubelet, kube-controller-manager, kube-scheduler and the pause program (cached)
#   install  Debian's containerd, runc, containernetworking-plugins, busybox-static when missing
#   start    (control plane must run) containerd, controllers, scheduler, kubelet; node Ready
#   stop     pods, kubelet, controllers, containerd (recorded PIDs only); sysctls restored
#   run      controlplane start + node start (--images: kmsync and app images), CMD with both
#            env files sourced, stop both
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_NAME="${KMSYNC_NODE_NAME:-kmsync-node}"
START_TIMEOUT="${NODE_START_TIMEOUT:-120}"
NODE_COMPONENTS=(kubelet kube-controller-manager kube-scheduler)
# Sysctls the kubelet rewrites at start (protectKernelDefaults: false); restored by stop.
KUBELET_SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false"

log() { printf '[node] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=scripts/lib.sh
source "$REPO_ROOT/scripts/lib.sh"

# The state dir holds containerd's socket, so its path must stay short (see state_dir_for).
STATE_DIR="${NODE_STATE_DIR:-$(state_dir_for node 60)}"
# Nodes to start: 2 gives a two-replica Deployment two node addresses (127.0.0.1 and .2).
NODE_COUNT="${KMSYNC_NODES:-1}"
PAUSE_IMAGE="kmsync.local/pause:1"

# --- build --------------------------------------------------------------------------------------

# build_components: one wrapper module for the three (the Go build cache is shared with the
# apiserver's, so a warm machine pays only for what differs).
build_components() {
  build_kube_commands "$CACHE_ROOT/src/kube-node-$K8S_VERSION" localbuild/kube-node "${NODE_COMPONENTS[@]}"
}

# build_pause: the sandbox image's program, a static binary that waits for SIGTERM/SIGINT.
build_pause() {
  [ -x "$BIN_DIR/pause" ] && return 0
  require_go
  local src="$CACHE_ROOT/src/pause"
  mkdir -p "$src" "$BIN_DIR"
  printf 'module localbuild/pause\n\ngo 1.24\n' > "$src/go.mod"
  cat > "$src/main.go" <<'GO'
// pause holds a pod's namespaces until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
GO
  (cd "$src" && "$GO" build -trimpath -ldflags "-s -w" -o "$BIN_DIR/pause" .)
}

build() { build_components; build_pause; }

# --- install ------------------------------------------------------------------------------------

install_packages() {
  local want=() p
  command -v containerd >/dev/null 2>&1 || want+=(containerd)
  command -v runc >/dev/null 2>&1 || want+=(runc)
  [ -x /usr/lib/cni/loopback ] || want+=(containernetworking-plugins)
  [ -x /bin/busybox ] || want+=(busybox-static)
  [ "${#want[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${want[*]} and not root: sudo apt-get install -y ${want[*]}"
  log "installing Debian packages: ${want[*]}"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$STATE_DIR"
  if ! apt-get install -y --no-install-recommends "${want[@]}" >"$STATE_DIR/apt.log" 2>&1; then
    apt-get update >>"$STATE_DIR/apt.log" 2>&1 || true
    apt-get install -y --no-install-recommends "${want[@]}" >>"$STATE_DIR/apt.log" 2>&1 \
      || { tail -n 20 "$STATE_DIR/apt.log" >&2; die "apt-get install ${want[*]} failed"; }
  fi
  # Debian's package starts its own containerd under init; ours runs beside it with its own
  # root, state and socket, so that one is left as the package set it up.
  for p in "${want[@]}"; do log "installed $p"; done
}

# --- start ---------------------------------------------------------------------------------------
#
# Node i (1-based) is named kmsync-node (i = 1) or kmsync-node-<i>, has the address 127.0.0.<i>,
# its own containerd, kubelet and state in $STATE_DIR/n<i>, and its own cgroup root, so that no
# kubelet ever takes another's pods for orphans and stop can remove every cgroup a node made.

node_name() { if [ "$1" -eq 1 ]; then echo "$NODE_NAME"; else echo "$NODE_NAME-$1"; fi; }
node_ip() { echo "127.0.0.$1"; }
node_dir() { echo "$STATE_DIR/n$1"; }
node_sock() { echo "$STATE_DIR/n$1/containerd/containerd.sock"; }
# Keyed by the state dir too, so two checkouts' nodes on one machine never share cgroups.
node_cgroup_root() { echo "/kmsync-$(printf '%s' "$STATE_DIR" | sha256sum | cut -c1-8)-n$1"; }

cp_env() {
  local env_file; env_file="$("$REPO_ROOT/scripts/controlplane.sh" env)"
  [ -f "$env_file" ] || die "the control plane is not running ($env_file missing): scripts/controlplane.sh start"
  # shellcheck disable=SC1090
  source "$env_file"
}

# write_network I: the node's network plugin. Every pod of this node runs in the host's network
# namespace, whatever its spec says: the runtime (write_runtime) drops the network namespace from
# each container, and the CNI plugin reports the node's own address (127.0.0.<i>) as the pod's IP.
# So a pod reaches 127.0.0.x and nothing else, probes and Services' endpoints point at the node's
# loopback address, and pods need no `hostNetwork: true`, which Pod Security "baseline" and
# "restricted" refuse.
write_network() {
  local dir; dir="$(node_dir "$1")"
  mkdir -p "$dir/cni/bin" "$dir/cni/conf"
  ln -sf /usr/lib/cni/loopback "$dir/cni/bin/loopback"
  cat > "$dir/cni/bin/kmsync-node-ip" <<'PLUGIN'
#!/bin/sh
# CNI plugin of kmsync's test node: the pod's IP is the node's address (nodeIP in the config).
case "$CNI_COMMAND" in
  ADD)
    ip="$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["nodeIP"])')"
    printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"%s/32","interface":0}]}\n' \
      "$CNI_IFNAME" "$CNI_NETNS" "$ip" ;;
  VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}\n' ;;
  *) cat >/dev/null ;;
esac
PLUGIN
  chmod 755 "$dir/cni/bin/kmsync-node-ip"
  cat > "$dir/cni/conf/10-kmsync-node-ip.conflist" <<CNI
{"cniVersion": "1.0.0", "name": "kmsync-node-ip", "plugins": [{"type": "kmsync-node-ip", "nodeIP": "$(node_ip "$1")"}]}
CNI
}

# write_runtime I: runc, but without a network namespace for any container (see write_network).
write_runtime() {
  local dir; dir="$(node_dir "$1")"
  cat > "$dir/runc" <<'RUNC'
#!/bin/sh
# runc for kmsync's test node: containers join the node's network namespace.
bundle=""
prev=""
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle="$arg" ;; esac
  case "$arg" in --bundle=*) bundle="${arg#--bundle=}" ;; esac
  prev="$arg"
done
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
  /usr/bin/python3 - "$bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
with open(path) as f:
    spec = json.load(f)
linux = spec.get("linux", {})
linux["namespaces"] = [n for n in linux.get("namespaces", []) if n.get("type") != "network"]
with open(path, "w") as f:
    json.dump(spec, f)
PY
fi
exec runc "$@"
RUNC
  chmod 755 "$dir/runc"
}

write_containerd_config() {
  local dir sock; dir="$(node_dir "$1")"; sock="$(node_sock "$1")"
  mkdir -p "$dir/containerd"
  write_network "$1"
  write_runtime "$1"
  cat > "$dir/containerd/config.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The VM has no CAP_SYS_RESOURCE: without this runc fails every sandbox.
  restrict_oom_score_adj = true
  enable_selinux = false
  # Pod network namespaces under our state dir (not /run/netns), so stop can unmount them.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$dir/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$dir/cni/bin"
    conf_dir = "$dir/cni/conf"
TOML
}

start_containerd() {
  local dir; dir="$(node_dir "$1")"
  write_containerd_config "$1"
  log "starting containerd of $(node_name "$1") ($(node_sock "$1"))"
  setsid containerd --config "$dir/containerd/config.toml" >"$dir/containerd.log" 2>&1 < /dev/null &
  echo $! > "$dir/containerd.pid"
  wait_ready containerd "$dir/containerd.pid" "$dir/containerd.log" "$START_TIMEOUT" \
    ctr -a "$(node_sock "$1")" version
}

# import_image TAR: load a docker-archive into the k8s.io namespace of every node's containerd.
import_image() {
  local sock
  for sock in "$STATE_DIR"/n*/containerd/containerd.sock; do
    ctr -a "$sock" -n k8s.io images import --snapshotter overlayfs "$1" >/dev/null
  done
}

import_pause() {
  local tar="$STATE_DIR/pause.tar"
  "$REPO_ROOT/scripts/image.sh" build-archive "$tar" "$PAUSE_IMAGE" /pause "$BIN_DIR/pause=/pause" >/dev/null
  import_image "$tar"
}

start_controllers() {
  local pki="$CP_STATE_DIR/pki"
  log "starting kube-controller-manager and kube-scheduler"
  setsid "$BIN_DIR/kube-controller-manager" --kubeconfig="$KUBECONFIG" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials=false --controllers='*' \
    --concurrent-gc-syncs=5 --v=1 \
    >"$STATE_DIR/kube-controller-manager.log" 2>&1 < /dev/null &
  echo $! > "$STATE_DIR/kube-controller-manager.pid"
  setsid "$BIN_DIR/kube-scheduler" --kubeconfig="$KUBECONFIG" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false --v=1 \
    >"$STATE_DIR/kube-scheduler.log" 2>&1 < /dev/null &
  echo $! > "$STATE_DIR/kube-scheduler.pid"
}

# make_cgroup_root I: the kubelet wants its cgroup root to exist in every v1 hierarchy.
make_cgroup_root() {
  local root controller; root="$(node_cgroup_root "$1")"
  for controller in /sys/fs/cgroup/*/; do
    [ -d "$controller" ] && [ ! -L "${controller%/}" ] || continue
    mkdir -p "$controller${root#/}" 2>/dev/null || true
  done
}

# remove_cgroup_root I: the node's cgroups, deepest first, once the killed tasks have left them
# (bounded: 5 s).
remove_cgroup_root() {
  local root controller left try; root="$(node_cgroup_root "$1")"
  for try in $(seq 1 25); do
    left=0
    for controller in /sys/fs/cgroup/*/; do
      [ -d "$controller${root#/}" ] || continue
      find "$controller${root#/}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      [ -d "$controller${root#/}" ] && left=1
    done
    [ "$left" -eq 0 ] && return 0
    sleep 0.2
  done
  log "warning: cgroups under $root still hold processes"
}

start_kubelet() {
  local i="$1" dir name ip kport hport
  dir="$(node_dir "$i")/kubelet"; name="$(node_name "$i")"; ip="$(node_ip "$i")"
  mkdir -p "$dir/root" "$dir/pki" "$dir/volume-plugins" "$dir/logs"
  kport="$(free_port)"; hport="$(free_port)"
  while [ "$hport" = "$kport" ]; do hport="$(free_port)"; done
  make_cgroup_root "$i"
  cat > "$dir/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: $kport
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $hport
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$CP_STATE_DIR/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: "$(node_cgroup_root "$i")"
containerRuntimeEndpoint: "unix://$(node_sock "$i")"
failSwapOn: false
# Secret volumes follow an update within ~2 s (10 s gave 8-15 s).
syncFrequency: 2s
podLogsDir: "$dir/logs"
resolvConf: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
serializeImagePulls: false
YAML
  log "starting kubelet (node $name, $ip:$kport)"
  setsid "$BIN_DIR/kubelet" --config="$dir/config.yaml" --kubeconfig="$KUBECONFIG" \
    --root-dir="$dir/root" --cert-dir="$dir/pki" --volume-plugin-dir="$dir/volume-plugins" \
    --hostname-override="$name" --node-ip="$ip" --v=1 \
    >"$dir/kubelet.log" 2>&1 < /dev/null &
  echo $! > "$(node_dir "$i")/kubelet.pid"
  wait_ready kubelet "$(node_dir "$i")/kubelet.pid" "$dir/kubelet.log" "$START_TIMEOUT" "$KUBECTL" get "node/$name"
  # The kubelet refuses to publish a loopback --node-ip ("nodeIP can't be loopback address") and
  # then publishes no address at all: host-network pods would get no IP and their probes no
  # target. Its failing address setter leaves the addresses alone, so set them once ourselves.
  "$KUBECTL" patch "node/$name" --subresource=status --type=merge -p \
    "{\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"$ip\"},{\"type\":\"Hostname\",\"address\":\"$name\"}]}}" >/dev/null
}

wait_nodes_ready() {
  local i
  for i in $(seq 1 "$NODE_COUNT"); do
    wait_ready kubelet "$(node_dir "$i")/kubelet.pid" "$(node_dir "$i")/kubelet/kubelet.log" \
      "$START_TIMEOUT" "$KUBECTL" wait --for=condition=Ready "node/$(node_name "$i")" --timeout=2s
  done
}

save_sysctls() {
  local key
  : > "$STATE_DIR/sysctls.saved"
  for key in "${KUBELET_SYSCTLS[@]}"; do
    echo "$key=$(sysctl -n "$key" 2>/dev/null || echo '')" >> "$STATE_DIR/sysctls.saved"
  done
}

restore_sysctls() {
  local line
  [ -f "$STATE_DIR/sysctls.saved" ] || return 0
  while IFS= read -r line; do
    [ -n "${line#*=}" ] && sysctl -q -w "$line" >/dev/null 2>&1 || true
  done < "$STATE_DIR/sysctls.saved"
  rm -f "$STATE_DIR/sysctls.saved"
}

# Host paths the kubelet writes whatever its flags say; stop removes those this start created.
HOST_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /usr/libexec/kubernetes)

record_host_paths() {
  local p
  : > "$STATE_DIR/host-paths.created"
  for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] || echo "$p" >> "$STATE_DIR/host-paths.created"; done
}

# joined FN: FN 1 … FN NODE_COUNT, joined with ':'.
joined() {
  local i out=""
  for i in $(seq 1 "$NODE_COUNT"); do out="$out${out:+:}$("$@" "$i")"; done
  echo "$out"
}
node_logs() { echo "$(node_dir "$1")/kubelet/logs"; }

start() {
  [ "$(id -u)" -eq 0 ] || die "the node needs root (containerd, mounts, cgroups)"
  install_packages; build
  cp_env
  stop
  rm -rf "$STATE_DIR"; mkdir -p "$STATE_DIR"; chmod 755 "$STATE_DIR"
  echo "$NODE_COUNT" > "$STATE_DIR/node-count"
  trap 'stop' ERR
  save_sysctls; record_host_paths
  local i
  for i in $(seq 1 "$NODE_COUNT"); do start_containerd "$i"; done
  import_pause
  start_controllers
  for i in $(seq 1 "$NODE_COUNT"); do start_kubelet "$i"; done
  wait_nodes_ready
  cat > "$STATE_DIR/env" <<ENV
export KMSYNC_NODE_NAME="$NODE_NAME"
export KMSYNC_NODE_NAMES="$(joined node_name)"
export KMSYNC_NODE_STATE_DIR="$STATE_DIR"
export KMSYNC_NODE_POD_LOGS="$(joined node_logs)"
export KMSYNC_CONTAINERD_SOCKS="$(joined node_sock)"
ENV
  trap - ERR
  log "$NODE_COUNT node(s) Ready: source $STATE_DIR/env"
}

# --- stop ----------------------------------------------------------------------------------------

# stop_pods SOCK: shims outlive containerd, so end every task while containerd still runs.
stop_pods() {
  local sock="$1" task
  [ -S "$sock" ] || return 0
  for task in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr -a "$sock" -n k8s.io tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
  done
  for task in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr -a "$sock" -n k8s.io tasks delete -f "$task" >/dev/null 2>&1 || true
  done
}

# stop_orphan_shims SOCK: shims of our containerd (named by its socket, which is ours alone) that
# outlived it, e.g. after an earlier stop was interrupted.
stop_orphan_shims() {
  local pid
  for pid in $(pgrep -f -- "containerd-shim-runc-v2 .*-address $1\$" || true); do
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  done
}

unmount_state() {
  local mnt
  for mnt in $(awk -v d="$STATE_DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$mnt" 2>/dev/null || true
  done
}

stop() {
  [ -d "$STATE_DIR" ] || return 0
  local i count
  count="$(cat "$STATE_DIR/node-count" 2>/dev/null || echo 1)"
  for i in $(seq 1 "$count"); do stop_pid_file "$(node_dir "$i")/kubelet.pid"; done
  for i in $(seq 1 "$count"); do stop_pods "$(node_sock "$i")"; done
  stop_pid_file "$STATE_DIR/kube-scheduler.pid"
  stop_pid_file "$STATE_DIR/kube-controller-manager.pid"
  for i in $(seq 1 "$count"); do stop_pid_file "$(node_dir "$i")/containerd.pid"; done
  for i in $(seq 1 "$count"); do stop_orphan_shims "$(node_sock "$i")"; done
  unmount_state
  for i in $(seq 1 "$count"); do remove_cgroup_root "$i"; done
  restore_sysctls
  if [ -f "$STATE_DIR/host-paths.created" ]; then
    local p
    while IFS= read -r p; do [ -n "$p" ] && rm -rf "$p"; done < "$STATE_DIR/host-paths.created"
    rm -f "$STATE_DIR/host-paths.created"
  fi
}

# usable: whether this machine can run the node (root for containerd, mounts and cgroups;
# overlayfs for the snapshotter). Prints why not.
usable() {
  if [ "$(id -u)" -ne 0 ]; then echo "the node needs root (containerd, mounts, cgroups)"; return 1; fi
  if ! grep -qw overlay /proc/filesystems; then echo "the kernel has no overlayfs"; return 1; fi
}

# run [--images] CMD...: control plane + node (+ the kmsync and app images when asked), CMD with
# both environments, then stop both, also on failure. Where the node cannot run, CI fails and
# elsewhere the run is skipped, loudly.
run() {
  local images=false why
  if [ "${1:-}" = "--images" ]; then images=true; shift; fi
  if ! why="$(usable)"; then
    [ "${CI:-}" = "true" ] && die "cannot run the node under CI: $why"
    log "SKIPPED: node tests not run: $why"
    return 0
  fi
  "$REPO_ROOT/scripts/controlplane.sh" start
  trap 'stop; "$REPO_ROOT/scripts/controlplane.sh" stop' EXIT
  cp_env
  "$REPO_ROOT/scripts/controlplane.sh" install-crds
  start
  # shellcheck disable=SC1091
  source "$STATE_DIR/env"
  if $images; then
    "$REPO_ROOT/scripts/image.sh" kmsync dev
    "$REPO_ROOT/scripts/image.sh" app dev
  fi
  export KUBECTL
  local status=0
  (cd "$REPO_ROOT" && "$@") || status=$?
  return "$status"
}

case "${1:-}" in
  build) started=$(date +%s); build; log "binaries in $BIN_DIR (took $(( $(date +%s) - started ))s)" ;;
  install) if why="$(usable)"; then install_packages; else log "SKIPPED install: $why"; fi ;;
  start) start ;;
  stop) stop ;;
  env) echo "$STATE_DIR/env" ;;
  pod-logs) node_logs 1 ;;
  import-image) shift; import_image "$1" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 build|install|start|stop|env|import-image TAR|run [--images] CMD..." >&2; exit 2 ;;
esac
