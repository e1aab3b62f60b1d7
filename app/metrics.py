"""Prometheus metrics, on a registry of our own so tests and several apps do not collide."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class OptionalGauge(Collector):
    """A gauge with no sample until it has a value: a rate of nothing is unknown, not 0."""

    def __init__(self, name: str, documentation: str, *, registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self.value: float | None = None
        registry.register(self)

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.value is not None:
            yield GaugeMetricFamily(self.name, self.documentation, value=self.value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter(
            "prmedic_webhooks_total", "Webhook deliveries by event and HTTP answer",
            ["event", "status"], registry=self.registry,
        )
        self.jobs_created = Counter(
            "prmedic_jobs_created_total", "Jobs recorded from webhooks", ["kind"], registry=self.registry,
        )
        self.jobs_finished = Counter(
            "prmedic_jobs_finished_total", "Jobs that reached a final state in this process",
            ["kind", "state"], registry=self.registry,
        )
        self.job_duration = Histogram(
            "prmedic_job_duration_seconds", "Time a job attempt ran in the worker", ["kind", "outcome"],
            buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600), registry=self.registry,
        )
        self.jobs_by_state = Gauge(
            "prmedic_jobs", "Jobs in the store by kind and state", ["kind", "state"], registry=self.registry,
        )
        self.github_retries = Counter(
            "prmedic_github_retries_total", "GitHub requests retried, by reason", ["reason"], registry=self.registry,
        )

        self.fix_outcomes = Counter(
            "prmedic_fix_outcomes_total", "Delivered fixes whose CI finished in this process, by outcome",
            ["outcome"], registry=self.registry,
        )
        self.fix_success_rate = OptionalGauge(
            "prmedic_fix_success_rate", "Share of prmedic's delivered fixes whose CI passed, of those whose CI "
            "finished (from the store); absent until one has", registry=self.registry,
        )
        self.cost_usd = Counter(
            "prmedic_cost_usd", "List-price cost of finished agent sessions (tokens and runtime), by job kind and "
            "review route (light, standard, deep; none for other jobs)", ["kind", "route"], registry=self.registry,
        )
        self.tokens = Counter(
            "prmedic_tokens", "Tokens used by finished agent sessions, by model and type "
            "(input, output, cache_read, cache_write)", ["model", "type"], registry=self.registry,
        )

    def count_session_cost(self, kind: str, route: str, total_usd: float, models: dict[str, dict[str, float]]) -> None:
        """Once per finished session: its list-price total and its tokens by model and type
        (`models` as in the job result's `cost.models`). `route`: the review's depth (a router
        session counts under the depth it chose), or `none` for a job that is not a review."""
        self.cost_usd.labels(kind, route).inc(max(total_usd, 0.0))
        for model, tokens in models.items():
            for kind_of_token in ("input", "output", "cache_read", "cache_write"):
                if tokens.get(kind_of_token):
                    self.tokens.labels(model, kind_of_token).inc(tokens[kind_of_token])

    def set_fix_outcomes(self, counts: dict[str, int]) -> None:
        finished = counts.get("succeeded", 0) + counts.get("failed", 0)
        self.fix_success_rate.value = counts.get("succeeded", 0) / finished if finished else None

    def render(self) -> bytes:
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST
