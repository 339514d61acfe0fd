#!/usr/bin/env bash
# Build the SAM application without Docker.
#
# aws-sam-cli pins versions that conflict with the app's own dependencies, so it
# lives in its own virtualenv (.venv-sam at the repo root, created on first use).
# `sam build` then builds the layer and the functions with the local python3.11
# (the template's runtime and architecture, x86_64, must match this machine).
#
# Usage: infra/sam-build.sh [extra sam build args...]
# Env:   PYTHON    interpreter used to create .venv-sam and to build (default python3.11)
#        SAM_VENV  where the SAM CLI virtualenv lives (default <repo>/.venv-sam)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
SAM_VENV="${SAM_VENV:-$ROOT/.venv-sam}"
SAM_CLI_SPEC="${SAM_CLI_SPEC:-aws-sam-cli>=1.120}"

export SAM_CLI_TELEMETRY=0

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "sam-build: $PYTHON not found; the functions run on python3.11 and SAM builds with it" >&2
  exit 1
fi

if [ ! -x "$SAM_VENV/bin/sam" ]; then
  echo "sam-build: creating $SAM_VENV with $SAM_CLI_SPEC" >&2
  "$PYTHON" -m venv "$SAM_VENV"
  "$SAM_VENV/bin/python" -m pip install --quiet --upgrade pip
  "$SAM_VENV/bin/python" -m pip install --quiet "$SAM_CLI_SPEC"
fi

# sam build looks up a `python3.11` executable on PATH for the python3.11 runtime.
PY_DIR="$(dirname "$(command -v "$PYTHON")")"
export PATH="$PATH:$PY_DIR"

cd "$ROOT"
exec "$SAM_VENV/bin/sam" build \
  --template-file template.yaml \
  --build-dir .aws-sam/build \
  "$@"
