"""The metrics recorded where things happen: HTTP requests (by the middleware in
:mod:`controller.http.metrics_routes`) and jobs (submission, dispatch, rollouts).

Each controller has its own :class:`CollectorRegistry` (never the process-wide one),
so several controllers in one process do not clash. Label values are bounded: an
HTTP method from a fixed list, a route's declared pattern, a status code, a job
kind, a result status. With metrics off (``metrics_enabled = false``) nothing is
recorded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from schemas.messages import ExecResult, ResultStatus

UNMATCHED_ROUTE = "unmatched"
"""The route label of a request no declared route matched (404, 405)."""
OTHER_METHOD = "OTHER"
"""The method label of a method no route takes."""
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
HOSTS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
COLLECTION_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class HttpMetrics:
    """``nexec_http_requests_total{method,route,status}`` and
    ``nexec_http_request_duration_seconds{route}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "nexec_http_requests",
            "HTTP requests answered, by method, route pattern and status",
            ("method", "route", "status"),
            registry=registry,
        )
        self._seconds = Histogram(
            "nexec_http_request_duration_seconds",
            "Time from a request's arrival to its answer, by route pattern",
            ("route",),
            buckets=HTTP_SECONDS_BUCKETS,
            registry=registry,
        )
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[str, Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One request answered; ``route`` is a declared pattern or :data:`UNMATCHED_ROUTE`."""
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        key = (method, route, status)
        counter = self._counters.get(key)
        if counter is None:  # labels() takes a lock: resolve each series once
            counter = self._counters[key] = self._requests.labels(method, route, str(status))
        counter.inc()
        histogram = self._histograms.get(route)
        if histogram is None:
            histogram = self._histograms[route] = self._seconds.labels(route)
        histogram.observe(seconds)


class JobMetrics:
    """``nexec_jobs_total{kind}``, ``nexec_job_hosts``, ``nexec_host_results_total{status}``
    and ``nexec_collection_seconds``. Without a registry it records nothing."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.enabled = registry is not None
        registry = registry or CollectorRegistry(auto_describe=False)
        jobs = Counter("nexec_jobs", "Jobs started (answered 202), by kind", ("kind",),
                       registry=registry)  # fmt: skip
        self._jobs = {kind: jobs.labels(kind) for kind in ("exec", "shell")}
        self._hosts = Histogram(
            "nexec_job_hosts", "Hosts each job started was sent to (1 for _any)",
            buckets=HOSTS_BUCKETS, registry=registry,
        )  # fmt: skip
        self._results = Counter(
            "nexec_host_results",
            "Per-host outcomes decided by this controller, by status (no_reply and "
            "skipped included)",
            ("status",),
            registry=registry,
        )
        self._by_status = {status: self._results.labels(status.value) for status in ResultStatus}
        self._collection = Histogram(
            "nexec_collection_seconds",
            "Time from a job's publish to its last host decided (answered or given up)",
            buckets=COLLECTION_SECONDS_BUCKETS,
            registry=registry,
        )

    def job_started(self, *, shell: bool, hosts: int) -> None:
        if self.enabled:
            self._jobs["shell" if shell else "exec"].inc()
            self._hosts.observe(hosts)

    def decided(self, results: list[ExecResult]) -> None:
        """Count each host's final outcome (once per host and job)."""
        if not self.enabled:
            return
        for result in results:
            self._by_status[result.status].inc()

    def collected(self, seconds: float) -> None:
        """A job's collection ended, ``seconds`` after its publish."""
        if self.enabled:
            self._collection.observe(seconds)
