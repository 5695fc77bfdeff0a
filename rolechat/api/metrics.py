"""Prometheus metrics of one app (its own registry, so several apps in one process never mix counts).

rolechat_requests_total{method, route, status}     requests answered, by route template
rolechat_request_duration_seconds{method, route}   time to the last byte (streams included)
rolechat_queue_depth                               requests waiting for a generation slot
rolechat_in_flight                                 generations running
rolechat_rejected_total{reason}                    requests refused by admission control
rolechat_prompt_tokens_total, rolechat_completion_tokens_total
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

disable_created_metrics()  # no `*_created` series: they double the output and no dashboard reads them

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rolechat_requests", "Requests answered.", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "rolechat_request_duration_seconds",
            "Seconds from the request to the last byte of the response.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.rejected = Counter("rolechat_rejected", "Requests refused by admission control.", ["reason"], registry=r)
        self.prompt_tokens = Counter("rolechat_prompt_tokens", "Prompt tokens sent to the model.", registry=r)
        self.completion_tokens = Counter("rolechat_completion_tokens", "Tokens generated.", registry=r)
        Gauge("rolechat_queue_depth", "Requests waiting for a generation slot.", registry=r).set_function(queue_depth)
        Gauge("rolechat_in_flight", "Generations running.", registry=r).set_function(in_flight)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def count_tokens(self, prompt: int, completion: int) -> None:
        self.prompt_tokens.inc(max(prompt, 0))
        self.completion_tokens.inc(max(completion, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
