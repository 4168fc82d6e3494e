# Shared shell helpers of the scripts that start real components (sourced, never run).
# Each caller defines `log` before sourcing; these helpers only ever touch what they are given.

# The Kubernetes and etcd versions the test clusters are built from, and where builds are cached.
K8S_VERSION="${K8S_VERSION:-v1.34.10}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.5}"
CACHE_ROOT="${KMSYNC_CP_CACHE:-$HOME/.cache/k8s-controlplane}"
BIN_DIR="$CACHE_ROOT/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
GO="${GO:-/usr/local/go/bin/go}"
KUBECTL="${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}"

require_go() {
  if [ ! -x "$GO" ] && ! command -v "$GO" >/dev/null 2>&1; then
    log "Go not found at $GO: Kubernetes and etcd are built from the Go module proxy and need Go >= 1.24 (set GO=/path/to/go)"
    exit 1
  fi
}

# build_kube_commands SRC_DIR MODULE NAME...: build k8s.io/kubernetes/cmd/NAME into $BIN_DIR for
# each NAME not there yet, through a wrapper module MODULE in SRC_DIR that requires
# k8s.io/kubernetes@$K8S_VERSION with its staging modules replaced by their published versions
# (the upstream go.mod points them at ./staging, which the module proxy does not ship).
build_kube_commands() {
  local src="$1" module="$2" name missing=() minor patch staging upstream_mod go_line godebug_line x=""
  shift 2
  for name in "$@"; do [ -x "$BIN_DIR/$name" ] || missing+=("$name"); done
  [ "${#missing[@]}" -eq 0 ] && return 0
  require_go
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"; patch="$(echo "$K8S_VERSION" | cut -d. -f3)"
  mkdir -p "$src" "$BIN_DIR"
  (
    cd "$src"
    log "resolving k8s.io/kubernetes@$K8S_VERSION"
    upstream_mod="$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    staging="$(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$upstream_mod" | awk '{print $1}' | sort -u)"
    go_line="$(grep -E '^go [0-9]' "$upstream_mod" | head -n1)"
    godebug_line="$(grep -E '^godebug ' "$upstream_mod" | head -n1 || true)"
    {
      echo "module $module"; echo; echo "$go_line"
      [ -n "$godebug_line" ] && echo "$godebug_line"
      echo; echo "require k8s.io/kubernetes $K8S_VERSION"; echo; echo "replace ("
      for m in $staging; do echo "	$m => $m v0.$minor.$patch"; done
      echo ")"; echo
      for name in "$@"; do echo "tool k8s.io/kubernetes/cmd/$name"; done
    } > go.mod
    log "go mod tidy ($module, $(echo "$staging" | wc -l) staging modules)"
    "$GO" mod tidy
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      x="$x -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    for name in "${missing[@]}"; do
      local started; started=$(date +%s)
      log "building $name $K8S_VERSION (slow on a fresh machine)"
      "$GO" build -trimpath -tags=selinux,notest,grpcnotrace -ldflags "-s -w$x" \
        -o "$BIN_DIR/$name.tmp" "k8s.io/kubernetes/cmd/$name"
      mv "$BIN_DIR/$name.tmp" "$BIN_DIR/$name"
      log "$name built in $(( $(date +%s) - started ))s"
    done
  )
}

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# stop_pid_file FILE: end the process whose PID FILE records (TERM, then KILL after 20 s), bounded.
stop_pid_file() {
  local pid_file="$1" pid i
  [ -f "$pid_file" ] || return 0
  pid="$(cat "$pid_file")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pid_file"
}

# wait_ready NAME PID_FILE LOG TIMEOUT CMD...: poll CMD every 0.5 s while the process lives.
wait_ready() {
  local name="$1" pid_file="$2" logf="$3" timeout="$4"; shift 4
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      log "$name exited during start; last log lines:"; tail -n 40 "$logf" >&2; return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "$name not ready after ${timeout}s; last log lines:"; tail -n 40 "$logf" >&2; return 1
    fi
    sleep 0.5
  done
}

# searchable_by_all DIR: whether every directory from / down to DIR lets other users through
# (o+x). A checkout under a mode-700 home directory is not, and then neither the `postgres` user
# nor a pod's non-root user can reach state kept beside it.
searchable_by_all() {
  local dir
  dir="$(cd "$1" 2>/dev/null && pwd -P)" || return 1
  while [ -n "$dir" ] && [ "$dir" != "/" ]; do
    [ "$(( 0$(stat -c '%a' "$dir") & 01 ))" -ne 0 ] || return 1
    dir="$(dirname "$dir")"
  done
}

# state_dir_for NAME MAX_LEN: where a component keeps its state. target/NAME in the checkout when
# every parent is searchable by all and the path is at most MAX_LEN bytes (Unix socket paths are
# limited to 107); otherwise a directory of our own under /var/tmp, keyed by checkout and user.
state_dir_for() {
  local name="$1" max_len="$2" repo_root preferred key
  repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
  preferred="$repo_root/target/$name"
  mkdir -p "$repo_root/target"
  if searchable_by_all "$repo_root/target" && [ "${#preferred}" -le "$max_len" ]; then
    echo "$preferred"; return 0
  fi
  key="$(printf '%s' "$repo_root" | sha256sum | cut -c1-10)"
  mkdir -p -m 755 "/var/tmp/kmsync-$(id -u)-$key"
  chmod 755 "/var/tmp/kmsync-$(id -u)-$key"
  echo "/var/tmp/kmsync-$(id -u)-$key/$name"
}
