"""The metrics recorded where things happen: HTTP requests (by the middleware in
:mod:`controller.http.metrics_routes`) and jobs (as their submission starts them).

Recording is a plain counter increment or a bucket count (one event loop, so no
lock), a fraction of a µs; each object is also a prometheus-client ``Collector``
that turns the counts into metric families when ``/metrics`` is scraped
(prometheus-client's own ``Counter`` and ``Histogram`` take a lock and walk every
bucket per observation: about ten times the cost, docs/performance.md N8). Label
values are bounded: an HTTP method from a fixed list, a route's declared pattern, a
status code, a job kind, a result status. What the dispatcher decides is counted
once, in :class:`~controller.jobs.counters.DispatchCounters`, and read from there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.jobs.counters import DispatchCounters
from controller.metrics.buckets import Buckets
from schemas.messages import ResultStatus

UNMATCHED_ROUTE = "unmatched"
"""The route label of a request no declared route matched (404, 405)."""
OTHER_METHOD = "OTHER"
"""The method label of a method no route takes."""
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
JOB_KINDS = ("exec", "shell")

HTTP_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
HOSTS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


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
    """``nexec_jobs_total{kind}`` and ``nexec_job_hosts``, counted here as jobs start;
    ``nexec_host_results_total{status}`` and ``nexec_collection_seconds`` read, when
    scraped, from the dispatcher's :class:`DispatchCounters` (the one count of host
    outcomes, which ``$SRV.STATS`` reads too). Disabled (metrics off), it records
    nothing."""

    def __init__(self, dispatched: DispatchCounters | None = None, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.jobs: Counter[str] = Counter()
        self.hosts = Buckets(HOSTS_BUCKETS)
        self._dispatched = dispatched or DispatchCounters()

    def job_started(self, *, shell: bool, hosts: int) -> None:
        if self.enabled:
            self.jobs["shell" if shell else "exec"] += 1
            self.hosts.observe(hosts)

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
            results.add_metric((status.value,), self._dispatched.hosts[status])
        yield results
        collection = HistogramMetricFamily(
            "nexec_collection_seconds",
            "Time from a job's publish to its last host decided (answered or given up)",
        )
        self._dispatched.collection.add_to(collection)
        yield collection
