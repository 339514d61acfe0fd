"""The one Powertools Logger, Tracer and Metrics of the service.

Structured keys only; credentials never reach a log line (see ``store.crypto``).
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="mailsync")
tracer = Tracer(service="mailsync")
metrics = Metrics(namespace="mailsync", service="mailsync")
