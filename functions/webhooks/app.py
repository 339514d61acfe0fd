"""Webhook sender: SQS standard batch -> one delivery attempt per record, sent concurrently,
partial batch failures reported for infrastructure errors only.

A failed POST is not a failure here: ``deliver_job`` records it and schedules the retry. The
records of a batch are sent at once (threads; each bounded by the 10 s timeout), so a slow or
dead endpoint never holds up another endpoint's delivery in the same batch.
"""

from concurrent.futures import ThreadPoolExecutor

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailsync.observability import logger, metrics, tracer
from mailsync.usecases.webhooks import deliver_job


class ConcurrentBatchProcessor(BatchProcessor):
    """Powertools' SQS batch processor with the records handled on threads, one each."""

    def process(self) -> list[tuple]:
        records = list(self.records)
        if len(records) <= 1:
            return super().process()
        with ThreadPoolExecutor(max_workers=len(records)) as pool:
            return list(pool.map(self._process_record, records))


processor = ConcurrentBatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> str:
    # The receive count tells a first attempt that came back (a crash) from a fresh one.
    received = int(record.attributes.approximate_receive_count or 1)
    return deliver_job(record.json_body, received=received)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
