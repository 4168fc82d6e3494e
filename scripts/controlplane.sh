#!/usr/bin/env bash
# Build (once per machine, cached), start and stop a real etcd + kube-apiserver on 127.0.0.1.
# Follows docs/control-plane.md §6. Usage: controlplane.sh build|start|stop|env|restart-apiserver
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${CP_STATE_DIR:-$REPO_ROOT/target/controlplane}"
START_TIMEOUT="${CP_START_TIMEOUT:-120}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false"

log() { printf '[controlplane] %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$REPO_ROOT/scripts/lib.sh"

apiserver_bin() { echo "${TEST_ASSET_KUBE_APISERVER:-$BIN_DIR/kube-apiserver}"; }
etcd_bin() { echo "${TEST_ASSET_ETCD:-$BIN_DIR/etcd}"; }

build_apiserver() {
  [ -n "${TEST_ASSET_KUBE_APISERVER:-}" ] && return 0
  build_kube_commands "$CACHE_ROOT/src/kube-$K8S_VERSION" localbuild/kube-apiserver kube-apiserver
}

build_etcd() {
  [ -x "$(etcd_bin)" ] && return 0
  require_go
  local src="$CACHE_ROOT/src/etcd-$ETCD_VERSION"
  mkdir -p "$src" "$BIN_DIR"
  cd "$src"
  printf 'module localbuild/etcd\n\ngo 1.24.0\n' > go.mod
  log "building etcd $ETCD_VERSION"
  "$GO" get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  "$GO" build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
}

stop() {
  stop_pid_file "$STATE_DIR/kube-apiserver.pid"
  stop_pid_file "$STATE_DIR/etcd.pid"
}

make_pki() {
  local pki="$1"
  cd "$pki"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -subj "/CN=controlplane-test-ca" -days 7 -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=critical,CA:FALSE\n' > server.ext
  printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' > client.ext
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out apiserver.key 2>/dev/null
  openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr 2>/dev/null
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -extfile server.ext -out apiserver.crt 2>/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out admin.key 2>/dev/null
  openssl req -new -key admin.key -subj "/O=system:masters/CN=admin" -out admin.csr 2>/dev/null
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 -extfile client.ext -out admin.crt 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
  cd - >/dev/null
}

# start_apiserver: start kube-apiserver with the recorded flags, record its PID, wait until it
# is ready and serves the core API (appends to the log, so a restart keeps the earlier lines).
start_apiserver() {
  local args=() pki="$STATE_DIR/pki" api_port
  mapfile -t args < "$STATE_DIR/kube-apiserver.args"
  api_port="$(cat "$STATE_DIR/kube-apiserver.port")"
  log "starting kube-apiserver on 127.0.0.1:$api_port"
  setsid "$(apiserver_bin)" "${args[@]}" >>"$STATE_DIR/kube-apiserver.log" 2>&1 < /dev/null &
  echo $! > "$STATE_DIR/kube-apiserver.pid"
  local curl_auth=(--cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key")
  wait_ready kube-apiserver "$STATE_DIR/kube-apiserver.pid" "$STATE_DIR/kube-apiserver.log" "$START_TIMEOUT" \
    curl -fsS "${curl_auth[@]}" "https://127.0.0.1:$api_port/readyz"
  wait_ready kube-apiserver "$STATE_DIR/kube-apiserver.pid" "$STATE_DIR/kube-apiserver.log" "$START_TIMEOUT" \
    curl -fsS "${curl_auth[@]}" "https://127.0.0.1:$api_port/api/v1/namespaces/default"
}

# restart_apiserver [--kill]: stop the recorded kube-apiserver (SIGTERM, or SIGKILL with --kill,
# as a crash would) and start it again with the same flags on the same port against the same
# etcd, which is left alone. For fault tests: clients must ride out the gap. After SIGTERM the
# server stops listening at once but may linger; it gets CP_RESTART_GRACE seconds (default 5).
restart_apiserver() {
  local signal=TERM pid_file="$STATE_DIR/kube-apiserver.pid" pid i
  local polls=$(( ${CP_RESTART_GRACE:-5} * 5 ))
  [ "${1:-}" = "--kill" ] && signal=KILL
  if [ ! -f "$STATE_DIR/kube-apiserver.args" ] || [ ! -f "$pid_file" ]; then
    log "no recorded kube-apiserver in $STATE_DIR (start the control plane first)"; return 1
  fi
  pid="$(cat "$pid_file")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "stopping kube-apiserver (PID $pid, SIG$signal)"
    kill "-$signal" "$pid" 2>/dev/null || true
    for i in $(seq 1 "$polls"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    # The port is free only once the process is gone (bounded: SIGKILL cannot be ignored).
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pid_file"
  start_apiserver
}

start() {
  build_etcd; build_apiserver
  stop
  rm -rf "$STATE_DIR"
  mkdir -p -m 700 "$STATE_DIR" "$STATE_DIR/pki" "$STATE_DIR/etcd-data"
  trap 'stop' ERR
  local etcd_port peer_port api_port pki="$STATE_DIR/pki"
  etcd_port="$(free_port)"; peer_port="$(free_port)"; api_port="$(free_port)"
  while [ "$peer_port" = "$etcd_port" ]; do peer_port="$(free_port)"; done
  while [ "$api_port" = "$etcd_port" ] || [ "$api_port" = "$peer_port" ]; do api_port="$(free_port)"; done
  make_pki "$pki"

  local nofsync=""
  "$(etcd_bin)" --help 2>&1 | grep -q -- '--unsafe-no-fsync' && nofsync="--unsafe-no-fsync=true"
  log "starting etcd on 127.0.0.1:$etcd_port"
  setsid "$(etcd_bin)" --name=controlplane --data-dir="$STATE_DIR/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="controlplane=http://127.0.0.1:$peer_port" --log-level=warn $nofsync \
    >"$STATE_DIR/etcd.log" 2>&1 < /dev/null &
  echo $! > "$STATE_DIR/etcd.pid"
  wait_ready etcd "$STATE_DIR/etcd.pid" "$STATE_DIR/etcd.log" "$START_TIMEOUT" curl -fsS "http://127.0.0.1:$etcd_port/health"

  # The flags are recorded so that restart-apiserver starts the same server on the same port.
  local args=(--etcd-servers="http://127.0.0.1:$etcd_port"
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port"
    --cert-dir="$pki" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key"
    --client-ca-file="$pki/ca.crt" --service-account-issuer="https://127.0.0.1:$api_port/"
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key"
    --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=RBAC
    --allow-privileged=true
    # The node (scripts/node.sh) registers 127.0.0.1 as its InternalIP: logs, exec and
    # port-forward then reach the kubelet there, never through a DNS lookup of the node name.
    --kubelet-preferred-address-types=InternalIP)
  printf '%s\n' "${args[@]}" > "$STATE_DIR/kube-apiserver.args"
  echo "$api_port" > "$STATE_DIR/kube-apiserver.port"
  start_apiserver

  b64() { base64 -w0 < "$1"; }
  cat > "$STATE_DIR/admin.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: controlplane
  cluster: {server: "https://127.0.0.1:$api_port", certificate-authority-data: "$(b64 "$pki/ca.crt")"}
users:
- name: admin
  user: {client-certificate-data: "$(b64 "$pki/admin.crt")", client-key-data: "$(b64 "$pki/admin.key")"}
contexts:
- name: controlplane
  context: {cluster: controlplane, user: admin}
current-context: controlplane
KC
  chmod 600 "$STATE_DIR/admin.kubeconfig"
  cat > "$STATE_DIR/env" <<ENV
export KUBECONFIG="$STATE_DIR/admin.kubeconfig"
export CP_API_URL="https://127.0.0.1:$api_port"
export CP_ETCD_URL="http://127.0.0.1:$etcd_port"
export CP_STATE_DIR="$STATE_DIR"
ENV
  trap - ERR
  log "ready: source $STATE_DIR/env"
}

# install_crds: apply crds/ with the real kubectl and wait until every CRD is Established.
# `kubectl wait` fails instead of waiting while a new CRD has no status yet, so retry (bounded).
install_crds() {
  "$KUBECTL" apply --server-side --force-conflicts -f "$REPO_ROOT/crds/" >/dev/null
  local deadline=$(( $(date +%s) + 60 ))
  until "$KUBECTL" wait --for=condition=Established crd --all --timeout=10s >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "CRDs not Established after 60s"; "$KUBECTL" get crd -o wide >&2; return 1
    fi
    sleep 0.5
  done
}

# run CMD...: start, install the CRDs with the real kubectl, run CMD with KUBECONFIG set, stop
# (also when CMD fails or is interrupted). Exits with CMD's status.
run() {
  start
  trap 'stop' EXIT
  # shellcheck disable=SC1091
  source "$STATE_DIR/env"
  install_crds
  export KUBECTL
  local status=0
  (cd "$REPO_ROOT" && "$@") || status=$?
  return "$status"
}

case "${1:-}" in
  build)
    started=$(date +%s); build_etcd; build_apiserver
    log "binaries in $BIN_DIR (took $(( $(date +%s) - started ))s)" ;;
  start) start ;;
  stop) stop ;;
  run) shift; run "$@" ;;
  install-crds) install_crds ;;
  env) echo "$STATE_DIR/env" ;;
  restart-apiserver) shift; restart_apiserver "$@" ;;
  *) echo "usage: $0 build|start|stop|run CMD...|install-crds|env|restart-apiserver [--kill]" >&2; exit 2 ;;
esac
