"""Scheduler function: EventBridge tick -> enqueue one FIFO sync job per due account, enqueue
the webhook deliveries due within 15 minutes (the webhook due index), and count the accounts
per state (metrics the health alarms watch)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailsync.observability import logger, metrics, tracer
from mailsync.usecases.sync_account import census, schedule
from mailsync.usecases.webhooks import sweep_due


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    enqueued = schedule()
    metrics.add_metric(name="AccountsEnqueued", unit="Count", value=enqueued)
    webhooks = sweep_due()
    return {"enqueued": enqueued, "webhooks": webhooks, "accounts": census()}
