"""pynamodb models of the outbound events (issue 15): send records, the event feed, webhook
endpoints and deliveries. Same table and binding as ``store/models.py``, which registers them."""

from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
)

from mailsync.store.models import GSI1, GSI2, CompactJSONAttribute, _Base


# ------------------------------------------------------------------ events (issue 15)
class SendRecordItem(_Base):
    """``T#<t>#A#<a>`` / ``SEND#<at>#<id>``: the outcome of one send (``store/sends.py``)."""

    account_id = UnicodeAttribute()
    owner = UnicodeAttribute()
    status = UnicodeAttribute()  # succeeded | failed
    message_id = UnicodeAttribute(null=True)
    recipients = JSONAttribute(default=list)
    error = JSONAttribute(null=True)
    ttl = NumberAttribute()


class EventCounterItem(_Base):
    """``T#<t>#EV`` / ``#SEQ``: the last sequence number handed out in the tenant's feed."""

    seq = NumberAttribute(default=0)


class EventItem(_Base):
    """``T#<t>#EV`` / ``<seq, 20 digits>``: one event of the tenant's feed, or a *tombstone*
    (``type`` absent) that a reader wrote for a sequence number whose writer gave up."""

    event_id = UnicodeAttribute(null=True)
    type = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(null=True)
    allocated_at = NumberAttribute()  # ms since the epoch when the writer took the number
    data = CompactJSONAttribute(null=True)  # no blanks: most events stay within one write unit
    ttl = NumberAttribute()


# ------------------------------------------------------------- webhooks (issue 15)
class WebhookEndpointItem(_Base):
    """``T#<t>`` / ``WH#<endpoint>``: a webhook endpoint of the tenant (in its partition, so a
    tenant's endpoints are one Query and the tenant purge finds them). ``secret`` is the KMS
    envelope of the signing secret; ``previous_secret`` still signs until ``previous_until``."""

    tenant_id = UnicodeAttribute()
    endpoint_id = UnicodeAttribute()
    url = UnicodeAttribute()
    events = ListAttribute(of=UnicodeAttribute, default=list)
    description = UnicodeAttribute(default="")
    enabled = BooleanAttribute(default=True)
    disabled_reason = UnicodeAttribute(null=True)
    failing_since = UnicodeAttribute(null=True)  # first failure after the last success
    secret = JSONAttribute()
    previous_secret = JSONAttribute(null=True)
    previous_until = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class WebhookDeliveryItem(_Base):
    """``T#<t>#WH#<endpoint>`` / ``D#<delivery>``: one event for one endpoint (TTL 30 days);
    the delivery id begins with the event's time, so the partition lists newest first.

    Small on purpose (~0.5 KB, one write unit a copy): the body stays in the feed (``event_seq``;
    only a ``ping`` is kept inline). GSI1 by status (``T#<t>#WH#<ep>#S#<status>`` / the
    delivery id); GSI2 (sparse, present while pending) the webhook due index ``WDUE#<shard>``
    / ``<due_at>#<t>#<ep>#<delivery>``."""

    tenant_id = UnicodeAttribute()
    endpoint_id = UnicodeAttribute()
    delivery_id = UnicodeAttribute()
    event_id = UnicodeAttribute()
    event_type = UnicodeAttribute()
    event_seq = NumberAttribute(null=True)
    event = CompactJSONAttribute(null=True)
    status = UnicodeAttribute()
    attempts = NumberAttribute(default=0)
    max_attempts = NumberAttribute()
    last_status_code = NumberAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    next_attempt_at = UnicodeAttribute(null=True)
    last_attempt_at = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute()
    ttl = NumberAttribute()
    gsi1pk = UnicodeAttribute()
    gsi1sk = UnicodeAttribute()
    gsi2pk = UnicodeAttribute(null=True)
    gsi2sk = UnicodeAttribute(null=True)
    by_status = GSI1()
    due = GSI2()
