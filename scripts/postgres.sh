#!/usr/bin/env bash
# A throw-away PostgreSQL server on 127.0.0.1 for tests/postgres_register.rs (and anything else that
# needs a real database). Usage: postgres.sh start|stop|status|env|run CMD...
#
#   start   install Debian's `postgresql` if no server binaries exist, initdb target/postgres/data
#           (first time only), start the server on a free loopback port with scram-sha-256 password
#           auth and TLS (a throw-away CA), wait until it accepts connections, write target/postgres/env.
#           A second start while it runs only checks it and returns.
#   stop    SIGTERM (smart), then SIGINT (fast), then SIGKILL the recorded postmaster PID, bounded.
#   env     print the path of the env file (`source "$(scripts/postgres.sh env)"`).
#   run     start, run CMD with the env exported, stop again (only if this call started it).
#
# The env file exports PGHOST PGPORT PGDATABASE KMSYNC_PG_ADMIN_USER KMSYNC_PG_ADMIN_PASSWORD and
# KMSYNC_PG_CA_FILE (the CA that signed the server certificate, for verify-full).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { printf '[postgres] %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$REPO_ROOT/scripts/lib.sh"
# The server runs as the `postgres` user when we are root: its state must be reachable by that
# user, so a checkout under a private home directory keeps it under /var/tmp instead. The socket
# path (run/.s.PGSQL.<port>) must stay within the 107 bytes Unix sockets allow.
STATE_DIR="${PG_STATE_DIR:-$(state_dir_for postgres 80)}"
DATA_DIR="$STATE_DIR/data"
RUN_DIR="$STATE_DIR/run"
PID_FILE="$STATE_DIR/postgres.pid"
LOG_FILE="$STATE_DIR/postgres.log"
ENV_FILE="$STATE_DIR/env"
PASSWORD_FILE="$STATE_DIR/admin-password"
ADMIN_USER="kmsync_admin"
START_TIMEOUT="${PG_START_TIMEOUT:-60}"
STOP_TIMEOUT="${PG_STOP_TIMEOUT:-15}"

die() { log "error: $*"; exit 1; }

# --- binaries -----------------------------------------------------------------------------------

# The newest /usr/lib/postgresql/<major>/bin that has initdb, or nothing.
find_bin_dir() {
  local d best=""
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && best="$d"
  done
  [ -n "$best" ] && echo "$best"
  return 0
}

install_server() {
  [ "$(id -u)" -eq 0 ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin and not running as root: install them with 'sudo apt-get install -y --no-install-recommends postgresql'"
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL server binaries not found and apt-get is not available: install a PostgreSQL server (initdb, postgres, pg_isready) under /usr/lib/postgresql/<major>/bin"
  log "PostgreSQL server binaries not found: installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends postgresql >"$STATE_DIR/apt.log" 2>&1; then
    log "apt-get install failed; refreshing the package lists and retrying"
    apt-get update >>"$STATE_DIR/apt.log" 2>&1 || true
    if ! apt-get install -y --no-install-recommends postgresql >>"$STATE_DIR/apt.log" 2>&1; then
      tail -n 20 "$STATE_DIR/apt.log" >&2
      die "apt-get install -y --no-install-recommends postgresql failed (full log: $STATE_DIR/apt.log)"
    fi
  fi
}

ensure_server_binaries() {
  BIN_DIR="$(find_bin_dir)"
  if [ -z "$BIN_DIR" ]; then
    install_server
    BIN_DIR="$(find_bin_dir)"
    [ -n "$BIN_DIR" ] || die "the postgresql package installed but no initdb under /usr/lib/postgresql/*/bin"
  fi
  [ -x "$BIN_DIR/pg_isready" ] || die "$BIN_DIR/pg_isready missing"
}

# --- running as the database user ----------------------------------------------------------------

# PostgreSQL refuses to run as root: as root, run the server (and initdb) as the `postgres` system
# user the Debian package creates; otherwise as ourselves.
setup_run_as() {
  RUN_AS=()
  DB_USER="$(id -un)"
  [ "$(id -u)" -eq 0 ] || return 0
  DB_USER="${PG_OS_USER:-postgres}"
  id "$DB_USER" >/dev/null 2>&1 || die "running as root but there is no '$DB_USER' system user to run PostgreSQL as (set PG_OS_USER)"
  if command -v setpriv >/dev/null 2>&1; then
    # setpriv execs (no extra process), so $! is the postmaster itself.
    RUN_AS=(setpriv "--reuid=$DB_USER" "--regid=$(id -g "$DB_USER")" --init-groups --)
  elif command -v runuser >/dev/null 2>&1; then
    RUN_AS=(runuser -u "$DB_USER" --)
  else
    die "running as root and neither setpriv nor runuser exists to drop to '$DB_USER'"
  fi
}

as_db_user() { env -u PGPASSWORD HOME="$STATE_DIR" "${RUN_AS[@]}" "$@"; }

# --- helpers -------------------------------------------------------------------------------------

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

recorded_pid() { [ -f "$PID_FILE" ] && cat "$PID_FILE" || true; }

env_value() { sed -n "s/^export $1=\"\\(.*\\)\"$/\\1/p" "$ENV_FILE" 2>/dev/null || true; }

ready() {
  "$BIN_DIR/pg_isready" -q -h 127.0.0.1 -p "$1" -d postgres -t 2 >/dev/null 2>&1
}

random_password() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# A CA and a server certificate for 127.0.0.1/localhost, so tests can exercise require/verify-full.
make_tls() {
  local tls="$STATE_DIR/tls"
  [ -f "$tls/server.crt" ] && [ -f "$tls/ca.crt" ] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl is needed to make the test server's certificate"
  mkdir -p "$tls"
  (
    cd "$tls"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -subj "/CN=kmsync-postgres-test-ca" -days 30 -out ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' > server.ext
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key 2>/dev/null
    openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -extfile server.ext -out server.crt 2>/dev/null
    rm -f ca.key server.csr ca.srl
  )
  chmod 600 "$tls/server.key"
  [ -z "${RUN_AS[*]}" ] || chown "$DB_USER" "$tls/server.key"
}

# --- start / stop --------------------------------------------------------------------------------

init_data_dir() {
  [ -f "$DATA_DIR/PG_VERSION" ] && [ -s "$PASSWORD_FILE" ] && return 0
  rm -rf "$DATA_DIR" "$RUN_DIR"
  mkdir -p -m 700 "$DATA_DIR" "$RUN_DIR"
  local pwfile="$RUN_DIR/initdb-pw"
  (umask 077; random_password > "$PASSWORD_FILE")
  (umask 077; cp "$PASSWORD_FILE" "$pwfile")
  [ -z "${RUN_AS[*]}" ] || chown "$DB_USER" "$DATA_DIR" "$RUN_DIR" "$pwfile"
  log "initdb $DATA_DIR (as $DB_USER)"
  if ! as_db_user "$BIN_DIR/initdb" -D "$DATA_DIR" -U "$ADMIN_USER" --pwfile="$pwfile" \
      --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
      --no-instructions >"$STATE_DIR/initdb.log" 2>&1; then
    rm -f "$pwfile"
    tail -n 20 "$STATE_DIR/initdb.log" >&2
    die "initdb failed (log: $STATE_DIR/initdb.log)"
  fi
  rm -f "$pwfile"
  # TCP only from 127.0.0.1, always with a password; the socket directory is private to the server.
  cat > "$DATA_DIR/pg_hba.conf" <<'HBA'
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
HBA
  [ -z "${RUN_AS[*]}" ] || chown "$DB_USER" "$DATA_DIR/pg_hba.conf"
}

write_env() {
  local port="$1" password
  password="$(cat "$PASSWORD_FILE")"
  (umask 077; cat > "$ENV_FILE.tmp" <<ENV
export PGHOST="127.0.0.1"
export PGPORT="$port"
export PGDATABASE="postgres"
export KMSYNC_PG_ADMIN_USER="$ADMIN_USER"
export KMSYNC_PG_ADMIN_PASSWORD="$password"
export KMSYNC_PG_CA_FILE="$STATE_DIR/tls/ca.crt"
ENV
  )
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

start() {
  mkdir -p "$STATE_DIR"
  ensure_server_binaries
  setup_run_as
  local pid port
  pid="$(recorded_pid)"; port="$(env_value PGPORT)"
  if alive "$pid" && [ -n "$port" ] && ready "$port"; then
    log "already running (pid $pid, 127.0.0.1:$port): source $ENV_FILE"
    return 0
  fi
  stop
  if [ -n "${RUN_AS[*]}" ] && ! as_db_user test -x "$STATE_DIR"; then
    die "user '$DB_USER' cannot reach $STATE_DIR (a parent directory is not searchable); set PG_STATE_DIR to a reachable directory"
  fi
  init_data_dir
  make_tls
  port="$(free_port)"
  rm -f "$DATA_DIR/postmaster.pid"
  log "starting PostgreSQL ($BIN_DIR) on 127.0.0.1:$port"
  # setsid: its own session, so a Ctrl-C in the caller's terminal does not reach it.
  setsid env -u PGPASSWORD "${RUN_AS[@]}" "$BIN_DIR/postgres" -D "$DATA_DIR" \
    -c listen_addresses=127.0.0.1 -c port="$port" -c unix_socket_directories="$RUN_DIR" \
    -c password_encryption=scram-sha-256 -c ssl=on \
    -c ssl_cert_file="$STATE_DIR/tls/server.crt" -c ssl_key_file="$STATE_DIR/tls/server.key" \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c max_connections=50 -c shared_buffers=16MB -c log_min_messages=warning \
    >"$LOG_FILE" 2>&1 </dev/null &
  pid=$!
  echo "$pid" > "$PID_FILE"
  local deadline=$(( $(date +%s) + START_TIMEOUT ))
  until ready "$port"; do
    if ! alive "$pid"; then
      log "postgres exited during start; last log lines:"; tail -n 30 "$LOG_FILE" >&2; rm -f "$PID_FILE"; exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "postgres not ready after ${START_TIMEOUT}s; last log lines:"; tail -n 30 "$LOG_FILE" >&2
      stop; exit 1
    fi
    sleep 0.2
  done
  # With runuser in between, $! is runuser: record the postmaster itself.
  local postmaster
  postmaster="$(head -n1 "$DATA_DIR/postmaster.pid" 2>/dev/null || true)"
  if alive "$postmaster" && [ "$postmaster" != "$pid" ]; then echo "$postmaster" > "$PID_FILE"; fi
  write_env "$port"
  log "ready (pid $(cat "$PID_FILE")): source $ENV_FILE"
}

stop() {
  local pid i
  pid="$(recorded_pid)"
  if alive "$pid"; then
    # SIGTERM = smart shutdown (waits for clients), SIGINT = fast (disconnects them), SIGKILL last.
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $(( STOP_TIMEOUT * 5 / 3 ))); do alive "$pid" || break; sleep 0.2; done
    if alive "$pid"; then
      kill -INT "$pid" 2>/dev/null || true
      for i in $(seq 1 $(( STOP_TIMEOUT * 5 ))); do alive "$pid" || break; sleep 0.2; done
    fi
    if alive "$pid"; then
      log "postgres (pid $pid) did not stop in time: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PID_FILE"
}

# run CMD...: start (if needed), run CMD from the repository root with the env exported, then stop
# the server if this call started it. Exits with CMD's status.
run() {
  local was_running=""
  alive "$(recorded_pid)" && was_running=1
  start
  [ -n "$was_running" ] || trap 'stop' EXIT
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  local status=0
  (cd "$REPO_ROOT" && "$@") || status=$?
  return "$status"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    pid="$(recorded_pid)"
    if alive "$pid"; then echo "running (pid $pid, port $(env_value PGPORT))"; else echo "stopped"; exit 1; fi ;;
  env) echo "$ENV_FILE" ;;
  run) shift; [ "$#" -gt 0 ] || { echo "usage: $0 run CMD..." >&2; exit 2; }; run "$@" ;;
  *) echo "usage: $0 start|stop|status|env|run CMD..." >&2; exit 2 ;;
esac
