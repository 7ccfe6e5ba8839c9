"""Prometheus metrics: request counts and latency (this process), and, read from the database
at scrape time so that they cover every worker, queue depth, verdict counts and inference time."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from app.config import Settings
from app.db import repo
from app.db.models import DELIVERY_STATUSES
from app.db.session import session_scope
from app.pacs import outbox
from app.queue import queue_depth


class DatabaseCollector(Collector):
    def __init__(self, settings_provider: Callable[[], Settings]) -> None:
        self.settings_provider = settings_provider

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | SummaryMetricFamily]:
        settings = self.settings_provider()
        with session_scope(settings.database_url) as session:
            statuses = repo.status_counts(session)
            verdicts = repo.verdict_counts(session)
            n_done, seconds = repo.processing_seconds(session)
            reports = outbox.status_counts(session)
        series = GaugeMetricFamily("amaqc_series", "Series by status", labels=["status"])
        for name in ("receiving", "queued", "processing", "done", "failed"):
            series.add_metric([name], statuses.get(name, 0))
        yield series
        depth = GaugeMetricFamily(
            "amaqc_queue_depth", "Series waiting for inference (queued in the database)"
        )
        depth.add_metric([], statuses.get("queued", 0))
        yield depth
        broker = queue_depth(settings.broker_url)
        if broker is not None:
            yield GaugeMetricFamily(
                "amaqc_broker_messages", "Messages in the inference queue", value=broker
            )
        counts = CounterMetricFamily("amaqc_verdicts", "Series verdicts by label", labels=["label"])
        counts.add_metric(["artifact"], verdicts.get(1, 0))
        counts.add_metric(["clean"], verdicts.get(0, 0))
        yield counts
        yield SummaryMetricFamily(
            "amaqc_inference_seconds",
            "Seconds from a series' start of processing to its verdict",
            count_value=n_done,
            sum_value=seconds,
        )
        pacs = GaugeMetricFamily(
            "amaqc_pacs_reports",
            "Reports for the PACS (one per verdict and destination) by delivery status",
            labels=["status"],
        )
        for name in DELIVERY_STATUSES:
            pacs.add_metric([name], reports.get(name, 0))
        yield pacs


class Metrics:
    """One registry per app, so tests can build many apps."""

    def __init__(self, settings_provider: Callable[[], Settings]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "amaqc_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "amaqc_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.registry.register(DatabaseCollector(settings_provider))

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        self.requests.labels(request.method, route, str(response.status_code)).inc()
        self.latency.labels(route).observe(time.perf_counter() - start)
        return response
