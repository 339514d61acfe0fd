"""Gmail adapter: :class:`GmailProvider` implements :class:`~mailsync.domain.ports.MailProvider`
and :class:`~mailsync.domain.ports.MailClient` over the Gmail REST API v1 with plain ``requests``.

References (https://developers.google.com/gmail/api/reference/rest and guides):

* ``users.getProfile`` (``historyId``), ``users.labels.list``;
* ``users.messages.list`` (``labelIds``, ``q=after:<epoch>``, ``maxResults``, ``pageToken``),
  ``users.messages.get`` (``format=raw``: base64url RFC 5322, ``labelIds``, ``internalDate`` ms),
  ``users.messages.modify`` (``addLabelIds``/``removeLabelIds``), ``users.messages.trash``,
  ``users.messages.send`` (``raw``, ``threadId``);
* ``users.history.list`` (``startHistoryId``, ``historyTypes``, ``pageToken``; records
  ``messagesAdded``/``messagesDeleted``/``labelsAdded``/``labelsRemoved``; HTTP 404 when the
  start id is outside the retained window, "Synchronizing clients" guide: full sync then);
* ``users.watch`` / ``users.stop`` (push to Cloud Pub/Sub);
* batch requests (``POST /batch/gmail/v1``, ``multipart/mixed`` of ``application/http``
  parts, at most 100 calls, 50 recommended; each call counts against the quota);
* usage limits (15,000 quota units per user per minute; messages.get/list/modify/trash 5,
  history.list 2, send 100, getProfile/labels.list 1) and error handling (429 / 403
  ``rateLimitExceeded``/``userRateLimitExceeded``: exponential backoff, ``Retry-After``).

One module per job:

* :mod:`~mailsync.providers.gmail.tokens`: access tokens from a refresh token (google-auth);
* :mod:`~mailsync.providers.gmail.client`: the HTTP side (quota units, Google's error body,
  rate-limit retries, batch requests) over :class:`~mailsync.providers.http.RestProvider`;
* :mod:`~mailsync.providers.gmail.labels`: labels as folders (names, roles, membership);
* :mod:`~mailsync.providers.gmail.sync`: the folder sync (initial load, history deltas, cursor);
* :mod:`~mailsync.providers.gmail.inventory`: the completeness check (label ids in the window,
  ids only; missing mails fetched as the initial load builds them);
* :mod:`~mailsync.providers.gmail.writes`: write-through (UNREAD, moves, trash, send, watch).
"""

from __future__ import annotations

from mailsync.providers.gmail.client import DEFAULT_API_BASE, budget_for
from mailsync.providers.gmail.inventory import GmailInventory
from mailsync.providers.gmail.tokens import DEFAULT_TOKEN_URI, GMAIL_SCOPES, CredentialsTokenSource
from mailsync.providers.gmail.writes import GmailWrites

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_TOKEN_URI",
    "GMAIL_SCOPES",
    "CredentialsTokenSource",
    "GmailProvider",
    "budget_for",
]


class GmailProvider(GmailInventory, GmailWrites):
    """A session to one Gmail mailbox (see the module docstring).

    ``access_token`` returns a valid OAuth access token (for example a
    :class:`CredentialsTokenSource`); when it has an ``invalidate()`` method it is called
    after a 401 before the one retry. ``user`` keys the shared quota budget (the address).
    ``calls`` names the API methods called, e.g. "history.list" (batch parts included).
    """
