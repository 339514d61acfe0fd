#!/usr/bin/env bash
# Build the SAM application without Docker.
#
# aws-sam-cli pins versions that conflict with the app's own dependencies, so it
# lives in its own virtualenv (.venv-sam at the repo root, created on first use).
# `sam build` then builds the functions with the local python3.13, the template's
# runtime (infra/find-python.sh finds it: PATH, pyenv, ~/.pyenv), and the layer with
# layers/mailsync/Makefile: the aarch64 wheels of layers/mailsync/requirements.lock (the
# functions are arm64). Afterwards infra/check-layer.py fails the build unless every ELF
# file in the layer is aarch64 and the dev tools (mailsync_local) are not in it.
#
# Usage: infra/sam-build.sh [extra sam build args...]
# Env:   PYTHON    interpreter used to create .venv-sam and to build (default: Python 3.13 found
#                  by infra/find-python.sh)
#        SAM_VENV  where the SAM CLI virtualenv lives (default <repo>/.venv-sam)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNTIME_VERSION=3.13
SAM_VENV="${SAM_VENV:-$ROOT/.venv-sam}"
SAM_CLI_SPEC="${SAM_CLI_SPEC:-aws-sam-cli>=1.120}"

export SAM_CLI_TELEMETRY=0

if [ -z "${PYTHON:-}" ]; then
  PYTHON="$("$ROOT/infra/find-python.sh" "$RUNTIME_VERSION")" || exit 1
elif ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "sam-build: $PYTHON not found; the functions run on python$RUNTIME_VERSION and SAM builds with it" >&2
  exit 1
fi

# A .venv-sam made with another Python is rebuilt (the SAM CLI checks its own runtime).
if [ -x "$SAM_VENV/bin/python" ] && ! "$SAM_VENV/bin/python" -c \
    "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$RUNTIME_VERSION')" 2>/dev/null; then
  echo "sam-build: $SAM_VENV was made with another Python; recreating it" >&2
  rm -rf "$SAM_VENV"
fi
if [ ! -x "$SAM_VENV/bin/sam" ]; then
  echo "sam-build: creating $SAM_VENV with $SAM_CLI_SPEC" >&2
  "$PYTHON" -m venv "$SAM_VENV"
  "$SAM_VENV/bin/python" -m pip install --quiet --upgrade pip
  "$SAM_VENV/bin/python" -m pip install --quiet "$SAM_CLI_SPEC"
fi

# sam build looks up a `python3.13` executable on PATH for the python3.13 runtime. Put the
# interpreter's directory first: an inactive pyenv shim of the same name would fail.
PY_DIR="$(dirname "$(command -v "$PYTHON")")"
export PATH="$PY_DIR:$PATH"

LAYER_ARCH=arm64  # template.yaml: Globals.Function.Architectures and MailsyncLayer

cd "$ROOT"
# layers/mailsync/Makefile runs `$PYTHON -m pip install --target ...`: give it the SAM venv's
# Python 3.13, which has pip for sure (a distro python3.13 may come without it).
PYTHON="$SAM_VENV/bin/python" "$SAM_VENV/bin/sam" build \
  --template-file template.yaml \
  --build-dir .aws-sam/build \
  "$@"

"$PYTHON" "$ROOT/infra/check-layer.py" .aws-sam/build/MailsyncLayer "$LAYER_ARCH"
du -sh .aws-sam/build/MailsyncLayer | awk '{print "sam-build: layer " $1 " unzipped (.aws-sam/build/MailsyncLayer)"}'
