"""Folder roles: LIST with SPECIAL-USE attributes, else well-known names.

Protocols: LIST (RFC 3501 section 6.3.8), SPECIAL-USE (RFC 6154; plus ``\\Important`` from
RFC 8457 and the legacy XLIST ``\\Spam``/``\\AllMail``/``\\Starred``), LIST-EXTENDED and
LIST-STATUS (RFC 5258, RFC 5819), modified UTF-7 mailbox names (RFC 3501 section 5.1.3).

Invariants
----------
* ``\\Noselect``/``\\NonExistent`` folders are not listed. INBOX is ``inbox``.
* A SPECIAL-USE attribute wins. Only for roles no folder claims, well-known names (last path
  component, case-insensitive, in several languages) are used, the shallowest folder first,
  so ``Sent`` wins over ``Archive/2020/Sent``. Each role is given at most once by name.
* One ``LIST "" "*" RETURN (SPECIAL-USE STATUS (MESSAGES))`` gives roles and counts when the
  server has LIST-EXTENDED; otherwise a plain LIST (no counts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from imapclient import exceptions as imap_exc
from imapclient.imapclient import decode_utf7
from imapclient.response_parser import parse_response

from mailsync.domain.ports import FolderInfo, ProviderError
from mailsync.providers.imap.connection import ImapConnection
from mailsync.providers.imap.util import to_text

__all__ = ["FolderRoles", "folder_infos"]

# RFC 6154 attributes (plus \Important from RFC 8457 and legacy XLIST \Spam).
_FLAG_ROLES = {
    b"\\sent": "sent",
    b"\\drafts": "drafts",
    b"\\trash": "trash",
    b"\\junk": "junk",
    b"\\spam": "junk",
    b"\\archive": "archive",
    b"\\all": "all",
    b"\\allmail": "all",
    b"\\flagged": "flagged",
    b"\\starred": "flagged",
    b"\\important": "important",
}

# Name fallbacks (last path component, case-insensitive) for servers without SPECIAL-USE.
_NAME_ROLES: dict[str, tuple[str, ...]] = {
    "sent": (
        "sent",
        "sent items",
        "sent messages",
        "sent mail",
        "gesendet",
        "gesendete objekte",
        "gesendete elemente",
        "envoyés",
        "éléments envoyés",
        "enviados",
        "posta inviata",
        "verzonden",
    ),
    "drafts": ("drafts", "draft", "entwürfe", "brouillons", "borradores", "bozze", "concepten"),
    "trash": (
        "trash",
        "deleted items",
        "deleted messages",
        "bin",
        "papierkorb",
        "gelöschte objekte",
        "gelöschte elemente",
        "corbeille",
        "papelera",
        "cestino",
        "prullenbak",
    ),
    "junk": ("junk", "spam", "junk e-mail", "junk email", "bulk mail", "spamverdacht", "indésirables"),
    "archive": ("archive", "archives", "archiv", "archivo", "archivio", "archief"),
}


class FolderRoles(ImapConnection):
    """The folder listing of an IMAP session (see the module docstring)."""

    def list_folders(self) -> list[FolderInfo]:
        """Selectable folders with roles (SPECIAL-USE, else well-known names) and counts."""
        with self._errors():
            client = self._conn
            imap = client._imap
            options = []
            if b"LIST-EXTENDED" in self._caps:
                if b"SPECIAL-USE" in self._caps:
                    options.append("SPECIAL-USE")
                if b"LIST-STATUS" in self._caps:
                    options.append("STATUS (MESSAGES)")
            args = ['""', '"*"']
            if options:
                args += ["RETURN", "(" + " ".join(options) + ")"]
            imap.untagged_responses.pop("STATUS", None)
            typ, data = imap._simple_command("LIST", *args)
            if typ != "OK":
                raise ProviderError(f"LIST failed: {to_text(data[0] if data else '')}")
            typ, data = imap._untagged_response(typ, data, "LIST")
            listing = client._proc_folder_list(data)
            counts: dict[str, int] = {}
            for line in imap.untagged_responses.pop("STATUS", []):
                try:
                    parsed = parse_response([line] if not isinstance(line, list) else line)
                    name, items = parsed[0], parsed[-1]
                    name = str(name) if isinstance(name, int) else decode_utf7(name)
                    values = dict(zip(items[::2], items[1::2], strict=False))
                    if b"MESSAGES" in values:
                        counts[name] = int(values[b"MESSAGES"])
                except (imap_exc.ProtocolError, ValueError, IndexError, TypeError):
                    continue

        return folder_infos(listing, counts)


def folder_infos(
    listing: Iterable[tuple[tuple[bytes, ...], bytes | str | None, str]],
    counts: Mapping[str, int] | None = None,
) -> list[FolderInfo]:
    """Turn LIST entries ``(flags, delimiter, decoded name)`` into :class:`FolderInfo`.

    \\Noselect/\\NonExistent folders are skipped. Roles come from SPECIAL-USE
    attributes (RFC 6154); for roles no folder claims, well-known names (last path
    component, case-insensitive, shallowest folder first) are used. INBOX is ``inbox``.
    """
    counts = counts or {}
    folders: list[tuple[str, str | None, str | None]] = []  # (name, delimiter, flag role)
    for flags, delim, name in listing:
        lowered = {f.lower() for f in flags}
        if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
            continue
        role = None
        if name.upper() == "INBOX":
            role = "inbox"
        else:
            for f in flags:
                role = _FLAG_ROLES.get(f.lower())
                if role:
                    break
        folders.append((name, to_text(delim) if delim else None, role))

    taken = {role for _, _, role in folders if role}
    by_name: dict[str, str] = {}
    # Shallow folders first, so "Sent" wins over "Archive/2020/Sent".
    for name, delim, role in sorted(folders, key=lambda f: (f[0].count(f[1] or "\0"), f[0])):
        if role:
            continue
        leaf = name.rsplit(delim, 1)[-1] if delim else name
        for candidate, names in _NAME_ROLES.items():
            if candidate not in taken and leaf.casefold() in names:
                by_name[name] = candidate
                taken.add(candidate)
                break
    return [
        FolderInfo(name=name, role=role or by_name.get(name), messages=counts.get(name))
        for name, _, role in folders
    ]
