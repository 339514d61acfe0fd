"""A real Dovecot IMAP server for tests, plus helpers that act like a user's mail client.

:class:`Dovecot` writes a self-contained configuration into a temporary directory,
starts ``dovecot -c <conf>`` listening on a free loopback port and stops it again.
It is written for Debian's Dovecot 2.3 running as root (as in CI and the dev
container): login and internal processes run as ``dovenull``/``dovecot`` and the
mail is stored with the ``dovecot`` uid/gid.

The mailbox helpers (:meth:`Dovecot.append`, :meth:`Dovecot.move`, ...) open their
own short IMAP session per call with :mod:`imapclient`, so they change a mailbox
exactly as another mail client would while the code under test is connected.

:meth:`Dovecot.session_bytes` sums the ``in=``/``out=`` byte counts that Dovecot logs
when an IMAP session ends, which lets tests assert the wire cost of a sync.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import BinaryIO

from mailsync_local.mailbox_client import MailboxClient

DOVECOT_BIN = os.environ.get("MAILSYNC_TEST_DOVECOT", shutil.which("dovecot") or "/usr/sbin/dovecot")

# Dovecot 2.3.19's post-login capability list without CONDSTORE and QRESYNC.
CAPABILITIES_WITHOUT_CONDSTORE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT SEARCHRES WITHIN "
    "CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE "
    "SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
)

_LOGOUT_RE = re.compile(r"Logged out in=(\d+) out=(\d+)")


class DovecotError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot(MailboxClient):
    """One Dovecot instance in its own temporary directory.

    ``condstore=False`` removes CONDSTORE and QRESYNC from the advertised
    capabilities (``imap_capability``), to test the fallback sync path. ``acl=True`` loads
    the ACL plugin (RFC 4314, ``acl = vfile``), so :meth:`set_acl` can take rights away from a
    user's own folder (a folder without the ``r`` right answers ``NO [NOPERM]``).
    ``tls=(cert_pem, key_pem)`` turns TLS on: the ``port`` listener then offers STARTTLS
    (RFC 3501 section 6.2.1) and ``tls_port`` speaks implicit TLS (RFC 8314); without it
    (the default) Dovecot runs with ``ssl = no`` and offers no STARTTLS.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        condstore: bool = True,
        acl: bool = False,
        tls: tuple[str, str] | None = None,
        binary: str = DOVECOT_BIN,
    ) -> None:
        self.condstore = condstore
        self.acl = acl
        self.tls = tls
        self.binary = binary
        self.port = 0
        self.tls_port = 0
        self.root: Path | None = None
        self._users: dict[str, str] = {}
        self._proc_started = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdio: BinaryIO | None = None

    # -- lifecycle ---------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        assert self.root is not None, "Dovecot is not started"
        return self.root / "run"

    @property
    def log_path(self) -> Path:
        assert self.root is not None, "Dovecot is not started"
        return self.root / "dovecot.log"

    @property
    def passwd_path(self) -> Path:
        assert self.root is not None, "Dovecot is not started"
        return self.root / "passwd.d"

    def start(self, timeout: float = 15.0) -> Dovecot:
        if not os.path.exists(self.binary):
            raise DovecotError(f"dovecot binary not found at {self.binary!r}; install dovecot-imapd")
        if os.geteuid() != 0:
            raise DovecotError("the Dovecot test helper must run as root (it switches to the dovecot user)")
        mail_pw = pwd.getpwnam("dovecot")
        mail_gid = grp.getgrnam("dovecot").gr_gid
        pwd.getpwnam("dovenull")

        self.root = Path(tempfile.mkdtemp(prefix="mailsync-dovecot-"))
        os.chmod(self.root, 0o755)
        for sub in ("run", "state"):
            (self.root / sub).mkdir(mode=0o755)
            os.chmod(self.root / sub, 0o755)
        mail_dir = self.root / "mail"
        mail_dir.mkdir()
        os.chown(mail_dir, mail_pw.pw_uid, mail_gid)
        self.passwd_path.mkdir(mode=0o755)
        os.chmod(self.passwd_path, 0o755)
        self.log_path.touch()

        self.port = free_port()
        self.tls_port = free_port() if self.tls else 0
        ssl_conf = "ssl = no"
        if self.tls:
            ssl_conf = f"ssl = yes\nssl_cert = <{self.tls[0]}\nssl_key = <{self.tls[1]}"
        capability = ""
        if not self.condstore:
            capability = f"imap_capability = {CAPABILITIES_WITHOUT_CONDSTORE}\n"
        if self.acl:
            capability += (
                "mail_plugins = $mail_plugins acl\n"
                "protocol imap {\n  mail_plugins = $mail_plugins imap_acl\n}\n"
                "plugin {\n  acl = vfile\n}\n"
            )
        conf = f"""\
# Generated by tests/support/dovecot.py
protocols = imap
listen = 127.0.0.1
base_dir = {self.base_dir}
state_dir = {self.root / "state"}
instance_name = mailsync-test-{self.port}
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {mail_pw.pw_uid}
first_valid_gid = {mail_gid}
mail_uid = {mail_pw.pw_uid}
mail_gid = {mail_gid}
{ssl_conf}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
imap_logout_format = in=%i out=%o
{capability}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_path}/%u
}}
userdb {{
  driver = static
  args = uid={mail_pw.pw_uid} gid={mail_gid} home={mail_dir}/%u
}}
mail_location = maildir:{mail_dir}/%u/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
}}
# No auth penalty (tests log in with bad passwords on purpose): auth cannot reach
# this socket, so it disables the penalty.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = {"yes" if self.tls else "no"}
  }}
}}
"""
        conf_path = self.root / "dovecot.conf"
        conf_path.write_text(conf)
        self.conf_path = conf_path
        # -F keeps the master in the foreground as our child, so stop() can reap it.
        self._stdio = open(self.root / "dovecot.stdio", "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(conf_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._stdio,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._proc_started = True
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                out = (self.root / "dovecot.stdio").read_text(errors="replace")
                log = self.log_text()
                self._proc_started = False
                self.stop()
                raise DovecotError(f"dovecot exited with {self._proc.returncode}: {out}\n{log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as s:
                    if s.recv(200).startswith(b"* OK"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(f"dovecot did not accept connections on {self.port}:\n{self.log_text()}")
            time.sleep(0.05)
        return self

    def _master_pid(self) -> int | None:
        try:
            return int((self.base_dir / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 15.0) -> None:
        if self.root is None:
            return
        if self._proc_started and self._proc is not None:
            pid = self._master_pid() or self._proc.pid
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        if self._stdio is not None:
            self._stdio.close()
            self._stdio = None
        self._proc_started = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- users and logs ----------------------------------------------------------

    def add_user(self, user: str, password: str) -> None:
        """Add (or change) a user, usable at once.

        Each user has a one-line passwd-file (``passwd.d/<user>``, found through ``%u``
        in the passdb path): Dovecot stats a passwd-file at most once per second, so a
        shared file could hide a user added right after another login. A changed
        password of an existing user is therefore waited for (at most ~1 s).
        """
        if not user or any(ch in user for ch in ":/\n\0") or user.startswith("."):
            raise ValueError(f"unsupported user name {user!r}")
        if any(ch in password for ch in ":\n\0"):
            raise ValueError("password must not contain ':' or newlines")
        changed = user in self._users and self._users[user] != password
        self._users[user] = password
        path = self.passwd_path / user
        tmp = self.passwd_path / f".{user}.tmp"
        tmp.write_text(f"{user}:{{PLAIN}}{password}::::::\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        if changed:
            deadline = time.monotonic() + 5
            while True:
                try:
                    self.client(user).logout()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        user = f"{prefix}-{uuid.uuid4().hex[:10]}"
        password = uuid.uuid4().hex
        self.add_user(user, password)
        return user, password

    def set_acl(self, user: str, folder: str, rights: str | None) -> None:
        """Give the owner of ``folder`` (a top-level folder of ``user``) only ``rights`` (RFC 4314
        letters, e.g. ``"l"``: listed but not readable), by its ``dovecot-acl`` file; ``None``
        removes the file (all rights again). Needs ``acl=True``; a new session sees it."""
        if not self.acl:
            raise DovecotError("set_acl needs Dovecot(acl=True)")
        if "/" in folder or folder.upper() == "INBOX":
            raise ValueError("set_acl supports top-level folders other than INBOX")
        assert self.root is not None, "Dovecot is not started"
        path = self.root / "mail" / user / "Maildir" / f".{folder}" / "dovecot-acl"
        if rights is None:
            path.unlink(missing_ok=True)
            return
        path.write_text(f"owner {rights}\n")
        mail_pw = pwd.getpwnam("dovecot")
        os.chown(path, mail_pw.pw_uid, mail_pw.pw_gid)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""

    def session_bytes(self, user: str | None = None) -> int:
        """Sum of ``in`` + ``out`` bytes of the IMAP sessions logged out so far.

        With ``user`` only that user's sessions count. A session appears in the log
        once it has ended (LOGOUT or disconnect).
        """
        total = 0
        for line in self.log_text().splitlines():
            if user is not None and f"imap({user})" not in line:
                continue
            m = _LOGOUT_RE.search(line)
            if m:
                total += int(m.group(1)) + int(m.group(2))
        return total

    def logged_out_sessions(self, user: str | None = None) -> int:
        return sum(
            1
            for line in self.log_text().splitlines()
            if _LOGOUT_RE.search(line) and (user is None or f"imap({user})" in line)
        )

    def wait_for_logouts(self, user: str, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` sessions of ``user`` have written their logout line."""
        deadline = time.monotonic() + timeout
        while self.logged_out_sessions(user) < count:
            if time.monotonic() > deadline:
                raise DovecotError(f"only {self.logged_out_sessions(user)} of {count} logouts logged")
            time.sleep(0.02)

    # -- a mail client -----------------------------------------------------------

    def credentials(self, user: str) -> tuple[str, str]:
        return user, self._users[user]

    def status(self, user: str, folder: str) -> dict[bytes, int]:
        with self.client(user) as c:
            return c.folder_status(folder, ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "HIGHESTMODSEQ"])

    def rename_folder(self, user: str, old: str, new: str) -> None:
        with self.client(user) as c:
            c.rename_folder(old, new)

    def delete_folder(self, user: str, folder: str) -> None:
        with self.client(user) as c:
            c.delete_folder(folder)


def make_mail(
    subject: str,
    from_: str = "Alice <alice@example.com>",
    to: str | Sequence[str] = "Bob <bob@example.com>",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | Sequence[str] | None = None,
    body: str = "Hello.\n",
    html: str | None = None,
    attachment: tuple[str, str, bytes] | None = None,
    date: datetime | None = None,
    cc: str | Sequence[str] | None = None,
) -> bytes:
    """Build an RFC 5322 message with :mod:`email`.

    ``message_id``/``in_reply_to``/``references`` may be given with or without
    angle brackets. ``attachment`` is ``(filename, content_type, data)``.
    """

    def bracket(mid: str) -> str:
        mid = mid.strip()
        return mid if mid.startswith("<") else f"<{mid}>"

    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = from_
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    if cc:
        msg["Cc"] = cc if isinstance(cc, str) else ", ".join(cc)
    msg["Date"] = format_datetime(date or datetime.now().astimezone())
    msg["Message-ID"] = bracket(message_id) if message_id else make_msgid(domain="example.com")
    if in_reply_to:
        msg["In-Reply-To"] = bracket(in_reply_to)
    if references:
        refs = [references] if isinstance(references, str) else list(references)
        msg["References"] = " ".join(bracket(r) for r in refs)
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attachment is not None:
        filename, content_type, data = attachment
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return msg.as_bytes()
