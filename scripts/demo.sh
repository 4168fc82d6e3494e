#!/usr/bin/env bash
# make demo: a local control plane, the KMS emulator seeded with `db_cred`, the examples applied,
# the operator running; then the single-call rotation of Alibaba's walkthrough (PutSecretValue v2)
# and the Secret following it, seen by an application pod that mounts it (on a one-node cluster,
# scripts/node.sh, when we are root). Everything listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
KMSYNC="$TARGET_DIR/debug/kmsync"
KUBECTL=${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.33}
STATE="$REPO/target/demo"
NS=kmsync-demo
AK_ID=kmsync-demo
AK_SECRET=kmsync-demo-secret

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }

stop_pid() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null; rm -f "$1"; }
cleanup() {
  stop_pid "$STATE/operator.pid"
  stop_pid "$STATE/emulator.pid"
  $WITH_NODE && scripts/node.sh stop
  scripts/controlplane.sh stop
}
# The application pod needs the node, and the node needs root.
WITH_NODE=false
if [ "$(id -u)" -eq 0 ] && grep -qw overlay /proc/filesystems; then WITH_NODE=true; fi
trap cleanup EXIT

say "Building kmsync"
cargo build --quiet --bin kmsync
mkdir -p "$STATE"; rm -f "$STATE"/*

say "Starting a local Kubernetes control plane (etcd + kube-apiserver v1.34.10 on 127.0.0.1)"
scripts/controlplane.sh start
# shellcheck disable=SC1091
source target/controlplane/env
KUBECTL="$KUBECTL" scripts/controlplane.sh install-crds
echo "CRDs installed: $("$KUBECTL" get crd -o name | tr '\n' ' ')"

if $WITH_NODE; then
  say "Starting a node: kubelet + containerd, controller-manager, scheduler (scripts/node.sh)"
  scripts/node.sh start
  scripts/image.sh busybox dev
else
  echo "(not root: the application pod part of the demo is skipped)"
fi

say "Starting the KMS emulator, seeded with db_cred v1 (demo/seed.yaml)"
"$KMSYNC" emulator --listen 127.0.0.1:0 --access-key "$AK_ID:$AK_SECRET" --seed demo/seed.yaml \
  --port-file "$STATE/emulator.url" >"$STATE/emulator.log" 2>&1 &
echo $! > "$STATE/emulator.pid"
for _ in $(seq 1 100); do [ -s "$STATE/emulator.url" ] && break; sleep 0.1; done
[ -s "$STATE/emulator.url" ] || { echo "emulator did not start:"; cat "$STATE/emulator.log"; exit 1; }
URL=$(cat "$STATE/emulator.url")
echo "KMS emulator at $URL"
KMS=("$KMSYNC" kms --endpoint "$URL" --access-key-id "$AK_ID" --access-key-secret "$AK_SECRET")

say "Applying examples/secretstore.yaml and examples/managedsecret.yaml into namespace $NS"
"$KUBECTL" create namespace "$NS" >/dev/null
for f in examples/secretstore.yaml examples/managedsecret.yaml; do
  sed "s#http://127.0.0.1:18090#$URL#" "$f" | "$KUBECTL" apply -n "$NS" -f -
done

say "Running the operator (kmsync run --namespace $NS)"
"$KMSYNC" run --namespace "$NS" --admin-addr 127.0.0.1:0 >"$STATE/operator.log" 2>&1 &
echo $! > "$STATE/operator.pid"

show_secret() {
  "$KUBECTL" -n "$NS" get secret db-cred -o json | python3 -c '
import base64, json, sys
s = json.load(sys.stdin)
a = s["metadata"]["annotations"]
print("Secret db-cred  (KMS %s, version %s, stages %s)" % (a["kmsync.io/kms-secret-name"], a["kmsync.io/kms-version-id"], a["kmsync.io/kms-version-stages"]))
for k, v in sorted(s["data"].items()):
    print("  %-18s %s" % (k, base64.b64decode(v).decode()))'
}
wait_version() {
  for _ in $(seq 1 300); do
    [ "$("$KUBECTL" -n "$NS" get secret db-cred -o jsonpath='{.metadata.annotations.kmsync\.io/kms-version-id}' 2>/dev/null)" = "$1" ] && return 0
    sleep 0.2
  done
  echo "the Secret did not reach version $1; operator log:"; tail -n 30 "$STATE/operator.log"; return 1
}
wait_version v1
run "$KUBECTL" -n "$NS" get managedsecrets,secretstores
show_secret

# An application that mounts the Secret and prints the password each time the file changes.
app_log() { cat "$(scripts/node.sh pod-logs)/${NS}_app_"*/app/*.log 2>/dev/null | sed 's/^[^ ]* [^ ]* [^ ]* //'; }
wait_app() {
  for _ in $(seq 1 300); do app_log | grep -qxF "$1" && return 0; sleep 0.2; done
  echo "the application did not print: $1"; app_log; return 1
}
if $WITH_NODE; then
  say "An application pod mounts Secret db-cred and prints the password it reads"
  # Pods need the namespace's default ServiceAccount, which the controller-manager creates.
  for _ in $(seq 1 100); do "$KUBECTL" -n "$NS" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.2; done
  "$KUBECTL" -n "$NS" apply -f - <<'POD'
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 65532}
  containers:
    - name: app
      image: kmsync.local/busybox:dev
      imagePullPolicy: Never
      command: [sh, -c, 'last=""; while true; do p="$(cat /etc/db/password)"; [ "$p" != "$last" ] && echo "app sees password=$p" && last="$p"; sleep 1; done']
      volumeMounts: [{name: db, mountPath: /etc/db, readOnly: true}]
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
  volumes: [{name: db, secret: {secretName: db-cred}}]
POD
  "$KUBECTL" -n "$NS" wait --for=condition=Ready pod/app --timeout=120s
  wait_app "app sees password=$("$KUBECTL" -n "$NS" get secret db-cred -o jsonpath='{.data.password}' | base64 -d)"
  app_log
fi

say "Single-call rotation, as in Alibaba's walkthrough: PutSecretValue makes v2 ACSCurrent"
run "${KMS[@]}" PutSecretValue --SecretName db_cred --VersionId v2 \
  --SecretData '{"uname":"alice","pwd":"demo-password-v2"}' >/dev/null && echo "(v2 stored)"
run "${KMS[@]}" ListSecretVersionIds --SecretName db_cred | python3 -c '
import json, sys
for v in json.load(sys.stdin)["VersionIds"]["VersionId"]:
    print("  %-4s %s" % (v["VersionId"], ",".join(v["VersionStages"]["VersionStage"])))'

say "Asking for a sync now (the example also refreshes every minute on its own)"
run "$KUBECTL" -n "$NS" annotate managedsecret db-cred kmsync.io/force-sync="$(date +%s)" --overwrite
wait_version v2
run "$KUBECTL" -n "$NS" get managedsecrets
show_secret
echo
"$KUBECTL" -n "$NS" get events --field-selector involvedObject.kind=ManagedSecret \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message
if $WITH_NODE; then
  say "The application pod reads the new password from its volume (no restart)"
  wait_app "app sees password=demo-password-v2"
  app_log
fi

say "Done: the Secret followed KMS from v1 to v2, keeping the previous password alongside. Stopping everything."
