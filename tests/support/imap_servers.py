"""Real IMAP servers other than Dovecot for the integration tests (GNU Mailutils ``imap4d``,
Cyrus IMAP and Courier-IMAP), from Debian packages unpacked beside Dovecot by ``infra/ensure-imap-servers.sh``
(``dpkg -x`` into ``.tools/imap-servers``; ``apt-get install`` would remove Dovecot, since they
declare ``Conflicts: imap-server``). :class:`ImapTestServer` is the base for more of them.

Each server runs from its own temporary directory and config on a free loopback port, in its
own process group (``start_new_session``), and :meth:`ImapTestServer.stop` kills that whole
group, so the per-connection children go too.

The mailbox helpers (:meth:`ImapTestServer.append`, :meth:`~ImapTestServer.move`, ...) have the
names and arguments of :class:`tests.support.dovecot.Dovecot`'s, so a test and
:class:`tests.support.smtp.SmtpServer` can drive either. Users are named by their local part
(``user-ab12``); :meth:`ImapTestServer.login_name` is what a client sends in LOGIN, and
:meth:`ImapTestServer.path` turns a folder name into the server's (``INBOX.Archive`` where the
personal namespace is ``INBOX.``).
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import BinaryIO, ClassVar

from mailsync_local.mailbox_client import MailboxClient
from tests.support import secrets as leakscan
from tests.support.dovecot import free_port

REPO = Path(__file__).resolve().parents[2]
TOOLS_ROOT = Path(os.environ.get("MAILSYNC_IMAP_TOOLS", REPO / ".tools" / "imap-servers")) / "root"
# The folders every test user starts with (Dovecot's test config auto-creates the same).
STANDARD_FOLDERS = ("Sent", "Drafts", "Trash", "Junk", "Archive")


class ImapServerError(RuntimeError):
    pass


class ImapTestServer(MailboxClient):
    """The lifecycle and mail-client helpers shared by the servers (see the module docstring)."""

    host = "127.0.0.1"
    name: ClassVar[str] = "imap"
    binary_path: ClassVar[str] = ""
    prefix: ClassVar[str] = ""  # personal namespace prefix, e.g. "INBOX."

    def __init__(self) -> None:
        self.port = 0
        self.root: Path | None = None
        self._users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdio: BinaryIO | None = None

    @classmethod
    def binary(cls) -> Path:
        return TOOLS_ROOT / cls.binary_path

    @classmethod
    def installed(cls) -> bool:
        return cls.binary().exists()

    # -- lifecycle ---------------------------------------------------------------------------

    def _prepare(self) -> list[str]:
        """Write the config under ``self.root``; return the server's command line."""
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        libs = [str(TOOLS_ROOT / "usr/lib/x86_64-linux-gnu"), str(TOOLS_ROOT / "usr/lib")]
        return {**os.environ, "LD_LIBRARY_PATH": ":".join(libs)}

    def start(self, timeout: float = 20.0) -> ImapTestServer:
        if not self.installed():
            raise ImapServerError(f"{self.binary()} is missing: run infra/ensure-imap-servers.sh")
        if os.geteuid() != 0:
            raise ImapServerError(f"the {self.name} test server must run as root")
        self.root = Path(tempfile.mkdtemp(prefix=f"mailsync-{self.name}-"))
        os.chmod(self.root, 0o755)
        self.port = free_port()
        argv = self._prepare()
        self._stdio = open(self.root / "server.log", "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._stdio,
            stderr=subprocess.STDOUT,
            env=self._env(),
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                log = self.log_text()
                self.stop()
                raise ImapServerError(f"{self.name} exited with {self._proc.returncode}:\n{log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as s:
                    if s.recv(200).startswith(b"* OK"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                log = self.log_text()
                self.stop()
                raise ImapServerError(f"{self.name} did not accept connections on {self.port}:\n{log}")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self._proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self._proc.wait(timeout)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._proc is not None:
            try:  # the per-connection children may outlive the master briefly
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._proc = None
        if self._stdio is not None:
            self._stdio.close()
            self._stdio = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> ImapTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        if self.root is None:
            return ""
        return "".join(p.read_text(errors="replace") for p in sorted(self.root.glob("*.log")) if p.is_file())

    # -- users -------------------------------------------------------------------------------

    def login_name(self, user: str) -> str:
        return user

    def _create_user(self, user: str, password: str) -> None:
        raise NotImplementedError

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        """A fresh user with the standard folders; returns ``(login name, password)``."""
        user = f"{prefix}-{uuid.uuid4().hex[:10]}"
        password = leakscan.registered("imap/smtp password", uuid.uuid4().hex)  # the end-of-session scan
        self._users[user] = password
        self._create_user(user, password)
        with self.client(user) as c:
            for folder in STANDARD_FOLDERS:
                c.create_folder(self.path(folder))
        return self.login_name(user), password

    def local(self, login: str) -> str:
        """The user a login name (or a local part) belongs to."""
        return login.partition("@")[0]

    def email(self, login: str) -> str:
        return f"{self.local(login)}@example.test"

    def path(self, folder: str) -> str:
        return folder if folder.upper() == "INBOX" else self.prefix + folder

    # -- a mail client -----------------------------------------------------------------------

    def credentials(self, user: str) -> tuple[str, str]:
        local = self.local(user)
        return self.login_name(local), self._users[local]

    def flags(self, user: str, folder: str) -> dict[int, set[bytes]]:
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            return {u: set(d[b"FLAGS"]) for u, d in c.fetch(uids, ["FLAGS"]).items()} if uids else {}

    def message_ids(self, user: str, folder: str) -> list[str]:
        """The Message-ID header of every mail in ``folder`` (sorted)."""
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            if not uids:
                return []
            data = c.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
            out = []
            for d in data.values():
                header = next(v for k, v in d.items() if k.startswith(b"BODY["))
                out.append(header.decode().partition(":")[2].strip().strip("<>"))
            return sorted(out)


class MailutilsImap4d(ImapTestServer):
    """GNU Mailutils ``imap4d`` 3.15: IMAP4rev1 with neither MOVE, UIDPLUS nor CONDSTORE,
    namespace ``""`` with ``/``, mbox storage (its default). Not Maildir: there, a mail still
    in ``new/`` gets a fresh UID at every EXAMINE (seen here), which no client survives. Users are virtual (``virtdomain``: a passwd
    file per domain, ``crypt`` hashes), so they log in as ``user@example.test``."""

    name = "mailutils"
    binary_path = "usr/sbin/imap4d"

    def _prepare(self) -> list[str]:
        assert self.root is not None
        for sub in ("vpwd", "mail"):
            (self.root / sub).mkdir(mode=0o755)
        (self.root / "vpwd" / "example.test").touch(mode=0o644)
        conf = f"""\
logging {{ syslog false; severity notice; }};
pidfile {self.root}/imap4d.pid;
foreground true;
mode daemon;
auth {{ authentication generic; authorization virtdomain; }};
virtdomain {{ passwd-dir {self.root}/vpwd; }};
mailbox {{ mail-spool "mbox://{self.root}/mail/${{user}}/INBOX"; mailbox-type mbox; }};
namespace personal {{ prefix "" {{ directory "$home/folders"; mailbox-type mbox; }}; }};
server {self.host}:{self.port} {{ }};
"""
        (self.root / "imap4d.conf").write_text(conf)
        return [str(self.binary()), f"--config-file={self.root}/imap4d.conf"]

    def login_name(self, user: str) -> str:
        return f"{self.local(user)}@example.test"

    def _create_user(self, user: str, password: str) -> None:
        assert self.root is not None
        mail = pwd.getpwnam("mail")  # imap4d drops to the user's uid: Debian's mail user
        home = self.root / "mail" / user
        (home / "folders").mkdir(parents=True)
        (home / "INBOX").touch()
        for path in [home, *home.rglob("*")]:
            os.chown(path, mail.pw_uid, mail.pw_gid)
        hashed = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True
        ).stdout.strip()
        with open(self.root / "vpwd" / "example.test", "a") as f:
            f.write(f"{user}:{hashed}:{mail.pw_uid}:{mail.pw_gid}::{home}:/bin/false\n")


class CyrusImapd(ImapTestServer):
    """Cyrus IMAP 3.6 (Debian's cyrus-imapd): MOVE, UIDPLUS, CONDSTORE and QRESYNC, namespace
    ``INBOX.`` with ``.`` separators (``altnamespace`` and ``unixhierarchysep`` off), so every
    folder but INBOX is ``INBOX.<name>``. ``master`` runs the services of its own cyrus.conf,
    each with ``-C`` pointing at our imapd.conf (the compiled-in default is /etc/imapd.conf),
    and drops to ``cyrus_user``: Debian's existing ``mail`` user, so no ``cyrus`` account is
    needed. Passwords are checked by SASL ``alwaystrue`` (any password is accepted: these tests
    are about mail, not authentication); the INBOX is created at first login
    (``autocreate_quota``). Cyrus logs only to syslog, which this machine does not have."""

    name = "cyrus"
    binary_path = "usr/lib/cyrus/bin/master"
    prefix = "INBOX."

    def _prepare(self) -> list[str]:
        assert self.root is not None
        mail = pwd.getpwnam("mail")
        for sub in ("conf", "spool", "sock"):
            (self.root / sub).mkdir(mode=0o750)
            os.chown(self.root / sub, mail.pw_uid, mail.pw_gid)
        conf = self.root / "imapd.conf"
        conf.write_text(f"""\
configdirectory: {self.root}/conf
partition-default: {self.root}/spool
cyrus_user: mail
cyrus_group: mail
sasl_pwcheck_method: alwaystrue
sasl_mech_list: PLAIN
allowplaintext: yes
altnamespace: no
unixhierarchysep: no
virtdomains: off
autocreate_quota: 0
idlesocket: {self.root}/sock/idle
lmtpsocket: {self.root}/sock/lmtp
notifysocket: {self.root}/sock/notify
syslog_prefix: mailsync-cyrus
""")
        bindir = self.binary().parent
        (self.root / "cyrus.conf").write_text(f"""\
START {{
  recover cmd="{bindir}/ctl_cyrusdb -C {conf} -r"
}}
SERVICES {{
  imap cmd="{bindir}/imapd -C {conf}" listen="{self.host}:{self.port}" prefork=0 maxchild=20
}}
EVENTS {{
}}
""")
        return [
            str(self.binary()),
            "-C",
            str(conf),
            "-M",
            f"{self.root}/cyrus.conf",
            "-p",
            f"{self.root}/master.pid",
            "-D",
        ]

    def _create_user(self, user: str, password: str) -> None:
        """Nothing to do: any password logs in, and the first login creates ``INBOX``."""


@functools.cache
def _can_unshare_mounts() -> bool:
    """Whether this process may make a private mount namespace (root, or CAP_SYS_ADMIN): a
    CI runner without it skips Courier instead of failing it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        return subprocess.run([unshare, "-m", "true"], capture_output=True, timeout=10).returncode == 0  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return False


class CourierImap(ImapTestServer):
    """Courier-IMAP 5.0 (Debian's courier-imap): Maildir++, namespace ``INBOX.`` with ``.``,
    UIDPLUS and IDLE but neither MOVE nor CONDSTORE (Debian's default ``IMAP_CAPABILITY``).

    Courier's paths are compiled in: the authdaemon socket ``/run/courier/authdaemon/socket``,
    ``/etc/courier/authdaemonrc`` and the user database ``/etc/courier/userdb.dat``. So the
    whole server (``authdaemond`` + ``couriertcpd`` -> ``imaplogin`` -> ``imapd``) runs in a
    private mount namespace (``unshare -m``) where ``/etc`` and ``/run`` are overlays whose
    writes land in our temp dir, and ``/etc/courier`` and ``/run/courier`` are bind mounts of
    it: the host's /etc and /run are never written, and the mounts vanish with the processes.
    Users are real ``authuserdb`` entries with crypt passwords, delivered to ``mail``'s uid."""

    name = "courier"
    binary_path = "usr/bin/imapd"
    prefix = "INBOX."
    # Debian's /etc/courier/imapd defaults, minus the Trash auto-expiry (the tests date mail old).
    _IMAP_ENV: ClassVar[dict[str, str]] = {
        "IMAP_CAPABILITY": "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE",
        "IMAP_KEYWORDS": "1",
        "IMAP_ACL": "1",
        "IMAP_UMASK": "022",
        "IMAP_USELOCKS": "1",
        "IMAP_MOVE_EXPUNGE_TO_TRASH": "0",
    }

    @classmethod
    def installed(cls) -> bool:
        parts = ("usr/bin/imapd", "usr/sbin/couriertcpd", "usr/lib/courier/courier-authlib/authdaemond")
        return all((TOOLS_ROOT / p).exists() for p in parts) and _can_unshare_mounts()

    def _env(self) -> dict[str, str]:
        env = super()._env()
        libs = [
            str(TOOLS_ROOT / "usr/lib"),
            str(TOOLS_ROOT / "usr/lib/courier-authlib"),
            env["LD_LIBRARY_PATH"],
        ]
        return {**env, **self._IMAP_ENV, "LD_LIBRARY_PATH": ":".join(libs)}

    def _prepare(self) -> list[str]:
        assert self.root is not None
        r = self.root
        for sub in ("etc-up", "etc-work", "run-up", "run-work", "cetc", "crun/authdaemon", "users"):
            (r / sub).mkdir(parents=True)
        (r / "cetc" / "authdaemonrc").write_text('authmodulelist="authuserdb"\ndaemons=2\n')
        (r / "cetc" / "userdb").touch(mode=0o600)
        self._generation = 0
        self._make_userdb()
        t = TOOLS_ROOT
        (r / "run.sh").write_text(f"""\
set -e
mount -t overlay overlay -o lowerdir=/etc,upperdir={r}/etc-up,workdir={r}/etc-work /etc
mkdir -p /etc/courier && mount --bind {r}/cetc /etc/courier
mount -t overlay overlay -o lowerdir=/run,upperdir={r}/run-up,workdir={r}/run-work /run
mkdir -p /run/courier && mount --bind {r}/crun /run/courier
{t}/usr/lib/courier/courier-authlib/authdaemond &
while [ ! -S /run/courier/authdaemon/socket ]; do sleep 0.05; done
exec {t}/usr/sbin/couriertcpd -address={self.host} -noidentlookup -nodnslookup -maxprocs=20 \\
  -stderr={r}/tcpd.log {self.port} {t}/usr/lib/courier/courier/imaplogin {t}/usr/bin/imapd Maildir
""")
        return ["unshare", "--mount", "--propagation", "private", "sh", str(r / "run.sh")]

    def _make_userdb(self) -> None:
        """Rebuild ``userdb.dat`` and ``userdbshadow.dat`` from ``userdb``, as ``makeuserdb``
        does: the ``*pw=`` fields go to the shadow file, where authuserdb looks for them."""
        assert self.root is not None
        cetc = self.root / "cetc"
        plain, shadow = [], []
        for line in (cetc / "userdb").read_text().splitlines():
            user, _, fields = line.partition("\t")
            parts = fields.split("|")
            plain.append(f"{user}\t" + "|".join(f for f in parts if not f.partition("=")[0].endswith("pw")))
            shadow.append(f"{user}\t" + "|".join(f for f in parts if f.partition("=")[0].endswith("pw")))
        self._generation += 1
        for name, lines in (("userdb", plain), ("userdbshadow", shadow)):
            subprocess.run(
                [
                    str(TOOLS_ROOT / "usr/lib/courier/courier-authlib/makedatprog"),
                    "-",
                    str(cetc / f"{name}.tmp"),
                    str(cetc / f"{name}.dat"),
                ],
                input="".join(f"{x}\n" for x in lines) + ".\n",
                text=True,
                env=self._env(),
                check=True,
                capture_output=True,
            )
            # authuserdb re-opens a file when its mtime changes, in whole seconds: users made
            # within one second would go unseen, so each rebuild gets a later mtime.
            stamp = time.time() + self._generation
            os.utime(cetc / f"{name}.dat", (stamp, stamp))
        (cetc / "userdbshadow.dat").chmod(0o600)

    def _create_user(self, user: str, password: str) -> None:
        assert self.root is not None
        mail = pwd.getpwnam("mail")  # imapd runs as the userdb entry's uid
        home = self.root / "users" / user
        home.mkdir()
        subprocess.run(
            [str(TOOLS_ROOT / "usr/bin/maildirmake.courier"), str(home / "Maildir")],
            env=self._env(),
            check=True,
            capture_output=True,
        )
        for path in [home, *home.rglob("*")]:
            os.chown(path, mail.pw_uid, mail.pw_gid)
        hashed = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True
        ).stdout.strip()
        with open(self.root / "cetc" / "userdb", "a") as f:
            f.write(
                f"{user}\tuid={mail.pw_uid}|gid={mail.pw_gid}|home={home}|mail={home}/Maildir|systempw={hashed}\n"
            )
        self._make_userdb()
