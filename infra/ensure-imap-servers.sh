#!/usr/bin/env bash
# Puts the IMAP servers of the "other servers" integration tests next to Dovecot, without
# uninstalling it: GNU Mailutils imap4d (Debian's mailutils-imap4d), Cyrus IMAP (cyrus-imapd +
# cyrus-common) and Courier-IMAP (courier-imap + courier-base + courier-authlib*). Cyrus runs
# as Debian's existing `mail` user (cyrus_user in its test config), so no `cyrus` account is
# created; Courier's compiled-in /etc/courier and /run/courier paths are overlaid in a private
# mount namespace by the tests, so nothing is written under the host's /etc or /run.
#
# These packages declare `Conflicts: imap-server`, as dovecot-imapd does, so `apt-get install`
# would remove Dovecot. Instead the server packages are fetched with `apt-get download` and
# unpacked with `dpkg -x` into $TOOLS (default .tools/imap-servers, git-ignored); only their
# *library* dependencies, which conflict with nothing, are installed with apt. The tests run
# the unpacked binaries with their own configs (tests/support/imap_servers.py).
#
# Idempotent: a second run with everything in place does nothing (no apt call).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${MAILSYNC_IMAP_TOOLS:-$PWD/.tools/imap-servers}"
ROOT="$TOOLS/root"
STAMP="$TOOLS/.installed-v3"
# Unpacked, not installed: the servers and their own data packages.
SERVER_DEBS="mailutils-imap4d mailutils-common cyrus-imapd cyrus-common
  courier-imap courier-base courier-authlib courier-authdaemon courier-authlib-userdb"
# Installed with apt: shared libraries only (none provides or conflicts with imap-server).
LIBS="libmailutils9 libgsasl18 libwrap0
  libsasl2-2 libsasl2-modules libcom-err2 libclamav12 libical3 libicu72 libjansson4 libkrb5-3
  libldap-2.5-0 libpcre3 libpq5 libsqlite3-0 libxapian30 libxml2 libzephyr4
  libcourier-unicode4 libgamin0 libgdbm6 libidn12 libltdl7 libgnutls30"
BINS="usr/sbin/imap4d usr/lib/cyrus/bin/master usr/lib/cyrus/bin/imapd usr/lib/cyrus/bin/ctl_cyrusdb
  usr/bin/imapd usr/sbin/couriertcpd usr/lib/courier/courier/imaplogin
  usr/lib/courier/courier-authlib/authdaemond usr/lib/courier/courier-authlib/makedatprog"

all_there=1
for bin in $BINS; do [ -x "$ROOT/$bin" ] || all_there=0; done
if [ -f "$STAMP" ] && [ "$all_there" -eq 1 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "unpacking Mailutils imap4d, Cyrus IMAP and Courier-IMAP into $TOOLS (beside Dovecot) ..."
$SUDO apt-get update -qq
for pkg in $LIBS; do
  if apt-cache show "$pkg" 2>/dev/null | grep -qiE '^(Conflicts|Provides):.*imap-server'; then
    echo "refusing to install $pkg: it conflicts with the installed IMAP server" >&2
    exit 1
  fi
done
# shellcheck disable=SC2086 # word splitting of the package lists is intended
$SUDO apt-get install -y -qq --no-install-recommends $LIBS >/dev/null
mkdir -p "$TOOLS/debs" "$ROOT"
(
  cd "$TOOLS/debs"
  rm -f ./*.deb
  # shellcheck disable=SC2086
  apt-get download $SERVER_DEBS >/dev/null 2>&1 || $SUDO apt-get download $SERVER_DEBS >/dev/null
)
for deb in "$TOOLS"/debs/*.deb; do
  dpkg -x "$deb" "$ROOT"
done
# A library a server links is missing: say which, instead of failing in the tests later.
for bin in $BINS; do
  missing="$(LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/usr/lib:$ROOT/usr/lib/courier-authlib" ldd "$ROOT/$bin" | grep 'not found' || true)"
  if [ -n "$missing" ]; then
    echo "$ROOT/$bin lacks libraries:" >&2
    echo "$missing" >&2
    exit 1
  fi
done
touch "$STAMP"
