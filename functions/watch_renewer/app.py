"""Watch renewer: EventBridge tick -> re-call Gmail users.watch for every Google account (daily
each) and renew the Graph subscription of every Microsoft 365 account (twice a day each)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailsync.observability import logger, metrics, tracer
from mailsync.usecases.google import renew_watches
from mailsync.usecases.microsoft import renew_subscriptions


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    renewed = renew_watches()
    metrics.add_metric(name="GmailWatchesRenewed", unit="Count", value=renewed)
    subscriptions = renew_subscriptions()
    metrics.add_metric(name="GraphSubscriptionsRenewed", unit="Count", value=subscriptions)
    return {"renewed": renewed, "graph_subscriptions_renewed": subscriptions}
