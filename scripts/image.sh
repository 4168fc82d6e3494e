#!/usr/bin/env bash
# Container images without a registry or a container daemon: a root filesystem staged from host
# files (each binary with the shared libraries `ldd` names), packed as a docker-archive tarball
# (one layer, manifest.json, config) and imported into the test node's containerd.
# The Dockerfile stays the recipe for people who have docker; this is the same image's contents.
#
# Usage:
#   image.sh kmsync [TAG]      release kmsync → kmsync.local/kmsync:TAG (default: dev), imported
#   image.sh app [TAG]         busybox + psql, the test application → kmsync.local/app:TAG, imported
#   image.sh busybox [TAG]     busybox only, the demo's application → kmsync.local/busybox:TAG
#   image.sh build-archive OUT TAG ENTRYPOINT SRC=DST...   (static files only, not imported)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
# The user of distroless' `nonroot`, which the chart's restricted securityContext expects.
NONROOT_UID=65532

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# stage_binary ROOTFS SRC DST: copy SRC to ROOTFS/DST and every shared library it loads to the
# same path inside ROOTFS (symlinks resolved), so the binary runs with nothing else installed.
stage_binary() {
  local rootfs="$1" src="$2" dst="$3" lib
  install -D -m 755 "$src" "$rootfs$dst"
  for lib in $(ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' || true); do
    [ -e "$rootfs$lib" ] || install -D -m 755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
}

# stage_base ROOTFS: the files a distroless-like non-root image has: passwd/group naming
# nonroot, an empty /tmp, no shell.
stage_base() {
  local rootfs="$1"
  mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/home/nonroot"
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
    "$NONROOT_UID" "$NONROOT_UID" > "$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$NONROOT_UID" > "$rootfs/etc/group"
  [ -f /etc/ssl/certs/ca-certificates.crt ] \
    && install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  chown "$NONROOT_UID:$NONROOT_UID" "$rootfs/home/nonroot"
}

# pack ROOTFS OUT TAG CONFIG_JSON: a docker-archive of ROOTFS as one layer (sorted, owners and
# times fixed, so the same files give the same image id).
pack() {
  python3 - "$@" <<'PY'
import hashlib, io, json, os, sys, tarfile
rootfs, out, tag, config = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            info = tar.gettarinfo(path, arcname=os.path.relpath(path, rootfs))
            info.mtime = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
layer = layer.getvalue()
diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
image_config = json.dumps({
    "architecture": "amd64", "os": "linux", "config": config,
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created_by": "scripts/image.sh"}],
}, sort_keys=True).encode()
config_name = hashlib.sha256(image_config).hexdigest() + ".json"
manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
with tarfile.open(out, mode="w") as tar:
    for name, data in (("layer.tar", layer), (config_name, image_config), ("manifest.json", manifest)):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
print(config_name[:-5])
PY
}

import_into_node() {
  local env_file
  env_file="$("$REPO_ROOT/scripts/node.sh" env)"
  [ -f "$env_file" ] || die "the node is not running: scripts/node.sh start"
  "$REPO_ROOT/scripts/node.sh" import-image "$1"
}

build_kmsync() {
  local tag="${1:-dev}" bin="$TARGET_DIR/release/kmsync" work
  [ -x "$bin" ] || die "$bin missing: cargo build --release --bin kmsync"
  work="$(mktemp -d)"; trap 'rm -rf "$work"' RETURN
  stage_base "$work/rootfs"
  stage_binary "$work/rootfs" "$bin" /usr/local/bin/kmsync
  pack "$work/rootfs" "$work/image.tar" "kmsync.local/kmsync:$tag" \
    "{\"User\": \"$NONROOT_UID:$NONROOT_UID\", \"Entrypoint\": [\"/usr/local/bin/kmsync\"], \"Cmd\": [\"run\"], \"ExposedPorts\": {\"8080/tcp\": {}}}" >/dev/null
  import_into_node "$work/image.tar"
  log "kmsync.local/kmsync:$tag imported"
}

# The test application: busybox for a shell, psql to log in with what it reads from its volume.
build_app() {
  local tag="${1:-dev}" work psql tool
  psql="$(ls -d /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n1)"
  [ -x "$psql" ] || die "psql not found under /usr/lib/postgresql/*/bin (scripts/postgres.sh installs it)"
  [ -x /bin/busybox ] || die "/bin/busybox missing (scripts/node.sh install)"
  work="$(mktemp -d)"; trap 'rm -rf "$work"' RETURN
  stage_base "$work/rootfs"
  install -D -m 755 /bin/busybox "$work/rootfs/bin/busybox"
  for tool in sh cat sleep echo date ls test tr sha256sum cut printf; do ln -s busybox "$work/rootfs/bin/$tool"; done
  stage_binary "$work/rootfs" "$psql" /usr/local/bin/psql
  pack "$work/rootfs" "$work/image.tar" "kmsync.local/app:$tag" \
    "{\"User\": \"$NONROOT_UID:$NONROOT_UID\", \"Env\": [\"PATH=/usr/local/bin:/bin\"], \"Entrypoint\": [\"/bin/sh\"]}" >/dev/null
  import_into_node "$work/image.tar"
  log "kmsync.local/app:$tag imported"
}

# A shell and little else, for the demo's application pod.
build_busybox() {
  local tag="${1:-dev}" work tool
  [ -x /bin/busybox ] || die "/bin/busybox missing (scripts/node.sh install)"
  work="$(mktemp -d)"; trap 'rm -rf "$work"' RETURN
  stage_base "$work/rootfs"
  install -D -m 755 /bin/busybox "$work/rootfs/bin/busybox"
  for tool in sh cat sleep echo; do ln -s busybox "$work/rootfs/bin/$tool"; done
  pack "$work/rootfs" "$work/image.tar" "kmsync.local/busybox:$tag" \
    "{\"User\": \"$NONROOT_UID:$NONROOT_UID\", \"Env\": [\"PATH=/bin\"], \"Entrypoint\": [\"/bin/sh\"]}" >/dev/null
  import_into_node "$work/image.tar"
  log "kmsync.local/busybox:$tag imported"
}

# build_archive OUT TAG ENTRYPOINT SRC=DST...: static files only (e.g. the pause program).
build_archive() {
  local out="$1" tag="$2" entrypoint="$3" work pair; shift 3
  work="$(mktemp -d)"; trap 'rm -rf "$work"' RETURN
  mkdir -p "$work/rootfs"
  for pair in "$@"; do install -D -m 755 "${pair%%=*}" "$work/rootfs${pair#*=}"; done
  pack "$work/rootfs" "$out" "$tag" "{\"Entrypoint\": [\"$entrypoint\"]}"
}

case "${1:-}" in
  kmsync) shift; build_kmsync "$@" ;;
  app) shift; build_app "$@" ;;
  busybox) shift; build_busybox "$@" ;;
  build-archive) shift; build_archive "$@" ;;
  *) echo "usage: $0 kmsync [TAG] | app [TAG] | build-archive OUT TAG ENTRYPOINT SRC=DST..." >&2; exit 2 ;;
esac
