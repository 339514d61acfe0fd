#!/usr/bin/env bash
# Prints the path of a Python X.Y interpreter (default 3.13, the Lambda runtime of template.yaml),
# or says what to install and exits 1. Used by the Makefile and infra/sam-build.sh.
#
# Looks at, in order: $PY (if set, it must be X.Y), pythonX.Y on PATH, `pyenv prefix X.Y`,
# $PYENV_ROOT (or ~/.pyenv)/versions/X.Y*/, then the usual system and Homebrew locations.
# A pyenv shim that is on PATH but not active (`pyenv: pythonX.Y: command not found`) is skipped.
set -uo pipefail

want="${1:-3.13}"

is_wanted() {
  [ -n "$1" ] && [ -x "$1" ] || command -v "$1" >/dev/null 2>&1 || return 1
  "$1" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" >/dev/null 2>&1
}

real_path() {  # resolve pyenv shims and symlinks to the interpreter itself
  "$1" -c "import sys; print(sys.executable)"
}

if [ -n "${PY:-}" ]; then
  if is_wanted "$PY"; then real_path "$PY"; exit 0; fi
  echo "find-python: PY=$PY is not Python $want" >&2
  exit 1
fi

candidates=("python$want")
if command -v pyenv >/dev/null 2>&1; then
  prefix="$(pyenv prefix "$want" 2>/dev/null | head -n1 || true)"
  [ -n "$prefix" ] && candidates+=("$prefix/bin/python$want")
fi
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
for dir in $(ls -d "$pyenv_root/versions/$want"* 2>/dev/null | sort -rV); do
  candidates+=("$dir/bin/python$want")
done
candidates+=("/usr/local/bin/python$want" "/usr/bin/python$want" "/opt/homebrew/bin/python$want")

for cand in "${candidates[@]}"; do
  if is_wanted "$cand"; then real_path "$cand"; exit 0; fi
done

cat >&2 <<MSG
Python $want was not found (tried: python$want on PATH, pyenv, $pyenv_root/versions/$want*, /usr/local/bin, /usr/bin, /opt/homebrew/bin).
mailsync runs on the Lambda runtime python$want, and the tests, the local runner and the build use the same version. Install it with one of:
  pyenv install $want          (then run make again; nothing else to set)
  uv python install $want      (then: make PY=\$(uv python find $want) ...)
  apt-get install python$want python$want-venv   /   brew install python@$want
or point make at an interpreter: make PY=/path/to/python$want ...
MSG
exit 1
