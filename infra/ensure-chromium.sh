#!/usr/bin/env bash
# Installs Debian's chromium when it is missing: the browser tests (tests/e2e/test_web_client.py)
# drive it through Playwright with executable_path=/usr/bin/chromium, since Playwright's own
# browser download cannot work here. Idempotent; never removes anything.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing chromium (Debian package) for the browser tests ..."
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's package lists may be stale; refresh once when the package is unknown.
if ! apt-cache show chromium >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
[ -x /usr/bin/chromium ]
