#!/usr/bin/env bash
# Installs Debian's dovecot-imapd when it is missing (tests and the demo start their own
# Dovecot on a loopback port with a generated config; no system service is used).
set -euo pipefail
if command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing dovecot-imapd (Debian package) ..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq dovecot-imapd >/dev/null
# The package may start a system-wide dovecot; ours does not need it.
$SUDO systemctl stop dovecot >/dev/null 2>&1 || true
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]
