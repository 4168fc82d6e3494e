# Shared shell helpers of the scripts that start real components (sourced, never run).
# Each caller defines `log` before sourcing; these helpers only ever touch what they are given.

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
