"""The metrics recorded where things happen: HTTP requests (by the middleware in
:mod:`controller.http.metrics_routes`) and jobs (submission, dispatch, rollouts).

Recording is a plain counter increment or a bucket count (one event loop, so no
lock), a fraction of a µs; each object is also a prometheus-client ``Collector``
that turns the counts into metric families when ``/metrics`` is scraped
(prometheus-client's own ``Counter`` and ``Histogram`` take a lock and walk every
bucket per observation: about ten times the cost, docs/performance.md N8). Label
values are bounded: an HTTP method from a fixed list, a route's declared pattern, a
status code, a job kind, a result status.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.messages import ExecResult, ResultStatus

UNMATCHED_ROUTE = "unmatched"
"""The route label of a request no declared route matched (404, 405)."""
OTHER_METHOD = "OTHER"
"""The method label of a method no route takes."""
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
JOB_KINDS = ("exec", "shell")

HTTP_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
HOSTS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
COLLECTION_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Buckets:
    """One histogram's counts: how many observations fell at or under each bound (and
    over the last), and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def add_to(self, family: HistogramMetricFamily, labels: Sequence[str] = ()) -> None:
        """Add these counts to ``family`` as cumulative ``le`` buckets."""
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric(list(labels), buckets, self.total)


class HttpMetrics(Collector):
    """``nexec_http_requests_total{method,route,status}`` and
    ``nexec_http_request_duration_seconds{route}``."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.seconds: dict[str, Buckets] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered; ``route`` is a declared pattern or :data:`UNMATCHED_ROUTE`."""
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        self.requests[method, route, status] += 1
        buckets = self.seconds.get(route)
        if buckets is None:
            buckets = self.seconds[route] = Buckets(HTTP_SECONDS_BUCKETS)
        buckets.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "nexec_http_requests",
            "HTTP requests answered, by method, route pattern and status",
            labels=("method", "route", "status"),
        )
        for (method, route, status), count in sorted(self.requests.items()):
            requests.add_metric((method, route, str(status)), count)
        yield requests
        seconds = HistogramMetricFamily(
            "nexec_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route pattern",
            labels=("route",),
        )
        for route, buckets in sorted(self.seconds.items()):
            buckets.add_to(seconds, (route,))
        yield seconds


class JobMetrics(Collector):
    """``nexec_jobs_total{kind}``, ``nexec_job_hosts``, ``nexec_host_results_total{status}``
    and ``nexec_collection_seconds``. Disabled (metrics off), it records nothing."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.jobs: Counter[str] = Counter()
        self.hosts = Buckets(HOSTS_BUCKETS)
        self.results: Counter[ResultStatus] = Counter()
        self.collection = Buckets(COLLECTION_SECONDS_BUCKETS)

    def job_started(self, *, shell: bool, hosts: int) -> None:
        if self.enabled:
            self.jobs["shell" if shell else "exec"] += 1
            self.hosts.observe(hosts)

    def decided(self, results: list[ExecResult]) -> None:
        """Count each host's final outcome (once per host and job)."""
        if self.enabled:
            counts = self.results
            for result in results:
                counts[result.status] += 1

    def collected(self, seconds: float) -> None:
        """A job's collection ended, ``seconds`` after its publish."""
        if self.enabled:
            self.collection.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        jobs = CounterMetricFamily(
            "nexec_jobs", "Jobs started (answered 202), by kind", labels=("kind",)
        )
        for kind in JOB_KINDS:
            jobs.add_metric((kind,), self.jobs[kind])
        yield jobs
        hosts = HistogramMetricFamily(
            "nexec_job_hosts", "Hosts each job started was sent to (1 for _any)"
        )
        self.hosts.add_to(hosts)
        yield hosts
        results = CounterMetricFamily(
            "nexec_host_results",
            "Per-host outcomes decided by this controller, by status (no_reply and "
            "skipped included)",
            labels=("status",),
        )
        for status in ResultStatus:
            results.add_metric((status.value,), self.results[status])
        yield results
        collection = HistogramMetricFamily(
            "nexec_collection_seconds",
            "Time from a job's publish to its last host decided (answered or given up)",
        )
        self.collection.add_to(collection)
        yield collection
