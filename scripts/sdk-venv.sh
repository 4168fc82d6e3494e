#!/usr/bin/env bash
# Creates .venv in the repository root with the official Alibaba KMS Python SDK (the version
# pinned by docs/kms-api.md) and pytest. Idempotent: a second run only checks the pins.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
KMS_SDK="alibabacloud-kms20160120==3.3.1"
TEA_OPENAPI="alibabacloud-tea-openapi==0.4.6"
STAMP=.venv/.kmsync-sdk-stamp
WANT="$KMS_SDK $TEA_OPENAPI pytest"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && .venv/bin/python -c 'import alibabacloud_kms20160120, pytest' 2>/dev/null; then
  echo ".venv ready"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "$KMS_SDK" "$TEA_OPENAPI" pytest
echo "$WANT" > "$STAMP"
echo ".venv ready"
