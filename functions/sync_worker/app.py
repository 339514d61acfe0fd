"""Sync worker: SQS FIFO batch -> one job per record (an account sync, or a step of a user's
or a tenant's purge), partial batch failures reported."""

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailsync.observability import logger, metrics, tracer
from mailsync.usecases.lifecycle import purge_tenant_step, purge_user_step
from mailsync.usecases.sync_account import sync_account

processor = SqsFifoPartialProcessor()


def record_handler(record: SQSRecord) -> dict:
    job = record.json_body
    kind = job.get("kind", "sync")
    if kind == "purge_user":
        return purge_user_step(job["tenant_id"], job["user_id"])
    if kind == "purge_tenant":
        return purge_tenant_step(job["tenant_id"])
    return sync_account(job["tenant_id"], job["account_id"], reason=job.get("reason"))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
