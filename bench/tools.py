"""(b) mbsync and (c) offlineimap3: installed when missing, run against our Dovecot into a Maildir."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

PACKAGES = {"mbsync": "isync", "offlineimap": "offlineimap3"}


def ensure_installed(commands: list[str]) -> None:
    """``apt-get install -y`` the Debian packages of missing commands (sudo when not root)."""
    missing = [PACKAGES[c] for c in commands if shutil.which(c) is None]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"bench: installing {' '.join(missing)} (Debian packages) ...", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)  # noqa: S603
    subprocess.run(  # noqa: S603
        [*sudo, "apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL
    )
    for c in commands:
        if shutil.which(c) is None:
            raise RuntimeError(f"{c} is still missing after installing {PACKAGES[c]}")


def version(command: str) -> str:
    args = {"mbsync": ["mbsync", "--version"], "offlineimap": ["offlineimap", "--version"]}[command]
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


class _Tool:
    name = ""

    def __init__(self, host: str, port: int, user: str, password: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self.maildir = self.dir / "mail"
        self.maildir.mkdir()
        self.host, self.port, self.user, self.password = host, port, user, password
        self.write_config()

    def write_config(self) -> None:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def sync(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        out = subprocess.run(self.argv(), capture_output=True, text=True, timeout=1800)  # noqa: S603
        seconds = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(
                f"{self.name} failed ({out.returncode}): {out.stderr[-2000:]}{out.stdout[-2000:]}"
            )
        return {"seconds": seconds, "messages": self.count()}

    def count(self) -> int:
        return sum(
            len(files)
            for root, _dirs, files in os.walk(self.maildir)
            if os.path.basename(root) in ("cur", "new")
        )

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Mbsync(_Tool):
    name = "mbsync"

    def write_config(self) -> None:
        (self.dir / "mbsyncrc").write_text(
            f"""IMAPAccount bench
Host {self.host}
Port {self.port}
User {self.user}
Pass {self.password}
SSLType None
AuthMechs LOGIN

IMAPStore bench-far
Account bench

MaildirStore bench-near
Path {self.maildir}/
Inbox {self.maildir}/INBOX
SubFolders Verbatim

Channel bench
Far :bench-far:
Near :bench-near:
Patterns *
Create Near
Sync Pull
Expunge Near
SyncState *
"""
        )

    def argv(self) -> list[str]:
        return ["mbsync", "-c", str(self.dir / "mbsyncrc"), "-q", "bench"]


class OfflineImap(_Tool):
    name = "offlineimap"

    def write_config(self) -> None:
        (self.dir / "offlineimaprc").write_text(
            f"""[general]
accounts = bench
metadata = {self.dir}/meta
ui = quiet

[Account bench]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {self.maildir}

[Repository remote]
type = IMAP
remotehost = {self.host}
remoteport = {self.port}
remoteuser = {self.user}
remotepass = {self.password}
ssl = no
starttls = no
readonly = True
maxconnections = 1
"""
        )

    def argv(self) -> list[str]:
        return ["offlineimap", "-c", str(self.dir / "offlineimaprc"), "-o", "-u", "quiet"]
