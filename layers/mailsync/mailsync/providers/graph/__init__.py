"""Microsoft 365 / Outlook adapter: :class:`GraphProvider` implements
:class:`~mailsync.domain.ports.MailProvider` and :class:`~mailsync.domain.ports.MailClient`
over Microsoft Graph v1.0 with plain ``requests`` (no msgraph SDK).

References followed (https://learn.microsoft.com/graph/...):

* ``api/resources/message`` and ``api/message-delta`` (``GET /me/mailFolders/{id}/messages/delta``:
  ``$select``; ``$filter`` only on ``receivedDateTime ge|gt``, first call only; ``Prefer:
  odata.maxpagesize``; ``@odata.nextLink`` pages, then ``@odata.deltaLink``; ``@removed``
  rows with ``reason`` ``changed``/``deleted``), ``delta-query-messages`` and
  ``delta-query-overview`` (an expired token answers 410 Gone / ``syncStateNotFound``: full
  resync), ``api/message-get`` (``/$value`` for the MIME), ``api/message-update``
  (``isRead``), ``api/message-move`` (``destinationId``: id or well-known name; 201 and the
  moved message), ``api/message-delete``;
* ``api/resources/mailfolder``, ``api/user-list-mailfolders``, ``api/mailfolder-list-childfolders``,
  well-known folder names (``inbox``, ``sentitems``, ``deleteditems``, ``drafts``,
  ``junkemail``, ``archive``, ``outbox``);
* ``outlook-immutable-id`` (``Prefer: IdType="ImmutableId"``, sent on every call: ids survive
  moves between folders);
* ``api/user-sendmail`` (JSON ``{message, saveToSentItems}`` or base64 MIME as ``text/plain``),
  ``api/message-createreply`` (a draft, JSON or MIME) and ``api/message-send``;
* ``json-batching`` (``POST /$batch``, at most 20 requests, answers matched by ``id``);
* ``api/resources/subscription``, ``api/subscription-post-subscriptions``,
  ``api/subscription-update``, ``api/subscription-delete``, ``change-notifications-overview``,
  ``change-notifications-delivery-webhooks`` (validation handshake) and
  ``change-notifications-lifecycle-events``;
* ``throttling`` and ``throttling-limits`` (Outlook: 10,000 requests per 10 minutes and 4
  concurrent requests per app and mailbox; 429 with ``Retry-After``; 503/504 also honour it).

One module per job:

* :mod:`~mailsync.providers.graph.tokens`: access tokens from msal's token cache;
* :mod:`~mailsync.providers.graph.client`: the HTTP side (throttling budget and gate, Graph's
  error body, retries, ``$batch``) over :class:`~mailsync.providers.http.RestProvider`;
* :mod:`~mailsync.providers.graph.folders`: mail folders (display paths, ids, roles);
* :mod:`~mailsync.providers.graph.sync`: the folder sync (delta rounds, cursor, expiry);
* :mod:`~mailsync.providers.graph.inventory`: the completeness check (a folder's message ids
  since the start, ids only; missing mails fetched as the delta builds them);
* :mod:`~mailsync.providers.graph.writes`: write-through (read state, moves, deletes, send);
* :mod:`~mailsync.providers.graph.subscriptions`: change-notification subscriptions.
"""

from __future__ import annotations

from mailsync.providers.graph.client import DEFAULT_API_BASE, budget_for, semaphore_for
from mailsync.providers.graph.inventory import GraphInventory
from mailsync.providers.graph.subscriptions import GraphSubscriptions
from mailsync.providers.graph.tokens import DEFAULT_AUTHORITY, GRAPH_SCOPES, MsalTokenSource
from mailsync.providers.graph.writes import GraphWrites

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_AUTHORITY",
    "GRAPH_SCOPES",
    "GraphProvider",
    "MsalTokenSource",
    "budget_for",
    "semaphore_for",
]


class GraphProvider(GraphInventory, GraphWrites, GraphSubscriptions):
    """A session to one Microsoft 365 mailbox (use as a context manager).

    ``calls`` holds "METHOD path" of every request (batch parts included)."""
