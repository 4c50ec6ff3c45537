"""The metrics read from the controller's state when ``/metrics`` is scraped: nothing
is recorded for them on the hot path (the counters they read exist anyway)."""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.appkeys import (
    AUDIT,
    CONFIG,
    DISPATCHER,
    FLEET_PAUSE,
    LIFECYCLE,
    NATS_LINK,
    RATE_LIMITER,
    REGISTRY,
    STREAM_WRITER,
    VERDICTS,
)
from controller.natslink import LinkState


def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    """``name`` without ``_total`` (the exposition adds it)."""
    return CounterMetricFamily(name, documentation, value=value)


class StateCollector(Collector):
    """The controller's live state and its own counters, as Prometheus metrics."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        app = self._app
        link = app[NATS_LINK]
        yield gauge("nexec_agents", "Live agents in this controller's registry view",
                    len(app[REGISTRY].live()))  # fmt: skip
        yield gauge("nexec_nats_connected", "1 while connected to NATS and set up, else 0",
                    1 if link.state is LinkState.CONNECTED else 0)  # fmt: skip
        yield counter("nexec_nats_reconnects", "Reconnections to NATS since the start",
                      link.client.stats["reconnects"])  # fmt: skip
        yield gauge("nexec_inflight_requests", "HTTP requests being served",
                    app[LIFECYCLE].in_flight)  # fmt: skip
        yield counter("nexec_rate_limited", "Requests refused by the per-key rate limit "
                      "(or the per-address limit of requests without a valid key)",
                      app[RATE_LIMITER].refused)  # fmt: skip
        yield counter("nexec_audit_records_lost", "Audit records that could not be stored "
                      "(each logged whole at ERROR)", app[AUDIT].lost)  # fmt: skip
        yield counter("nexec_verdicts_lost", "Jobs whose no_reply verdicts were never "
                      "written to the job record", app[VERDICTS].lost)  # fmt: skip
        yield gauge("nexec_fleet_paused", "1 while the fleet is paused, else 0",
                    1 if app[FLEET_PAUSE].paused else 0)  # fmt: skip
        yield self._write_failures()
        yield self._dropped()

    def _write_failures(self) -> Metric:
        subjects = self._app[CONFIG].subjects
        family = CounterMetricFamily(
            "nexec_jetstream_write_failures",
            "Acknowledged JetStream writes that failed (refused, no stream, no "
            "acknowledgement in time, not published), by stream",
            labels=("stream",),
        )
        failures = self._app[STREAM_WRITER].failures
        ours = (subjects.jobs_stream(), subjects.results_stream(), subjects.audit_stream())
        for stream in dict.fromkeys([*ours, *sorted(failures)]):  # ours always, at 0 too
            family.add_metric((stream,), failures.get(stream, 0))
        return family

    def _dropped(self) -> Metric:
        family = CounterMetricFamily(
            "nexec_messages_dropped",
            "Acks and results dropped (another host's or job's, a host the job was not "
            "sent to, malformed, an answer on the reply subject), by reason",
            labels=("reason",),
        )
        for reason, count in sorted(self._app[DISPATCHER].dropped.items()):
            family.add_metric((reason,), count)
        return family
