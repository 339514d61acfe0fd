"""Events: a batch of the main table's DynamoDB stream -> outbound events (feed + webhooks).

A failure raises, so the event source mapping delivers the batch again (bisecting it);
every step is idempotent by event id (mailsync.usecases.events)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailsync.observability import logger, metrics, tracer
from mailsync.usecases.events import process_stream


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_stream(event.get("Records") or [])
