"""coda-otel: OpenTelemetry tracing and Prometheus metrics for conversational AI pipelines."""

__version__ = "0.1.0"
