"""Watch renewer: daily EventBridge tick -> re-call Gmail users.watch for every Google account."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailsync.observability import logger, metrics, tracer
from mailsync.usecases.google import renew_watches


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    renewed = renew_watches()
    metrics.add_metric(name="GmailWatchesRenewed", unit="Count", value=renewed)
    return {"renewed": renewed}
