"""The one Powertools Logger, Tracer and Metrics of the service.

Structured keys only; credentials never reach a log line (see ``store.crypto``).
X-Ray traces the AWS calls (botocore: DynamoDB through pynamodb, S3, KMS, SQS) from
import on, and the HTTP calls to Google and Microsoft (requests) once the provider
code is loaded (:func:`trace_http`). Powertools' default patches every library X-Ray
knows at import: ~70 ms more cold start, mostly for libraries we do not use.
"""

from functools import cache

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = Logger(service="mailsync")
tracer = Tracer(service="mailsync", patch_modules=("botocore",))
metrics = Metrics(namespace="mailsync", service="mailsync")


@cache
def trace_http() -> None:
    """Trace ``requests`` (Google, Microsoft, msal, google-auth); once per process."""
    tracer.patch(modules=("requests",))


def metric_by(name: str, value: float, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """One metric with its own dimensions (``service`` plus ``dimensions``), flushed at once:
    the shared :data:`metrics` object's dimensions apply to every metric of an invocation, so
    a per-code or per-state series needs its own (``single_metric``)."""
    with single_metric(
        name=name, unit=unit, value=value, namespace="mailsync", default_dimensions={"service": "mailsync"}
    ) as m:
        for k, v in dimensions.items():
            m.add_dimension(name=k, value=v)
